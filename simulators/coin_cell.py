"""3D phantom of the XCS-CT paper's CR2032 coin cell, with its lithium field.

- :class:`CoinCell`: geometry in metres (z up from the bottom of the can): steel can and cap,
  a porous NMC811 cathode (~1 mm, 14 mm across) whose pores hold electrolyte, a separator,
  a Li metal anode (0.25 mm, 16 mm across), a steel spacer (0.5 mm), a wave spring, and
  electrolyte around the cathode's edge with optional Ar bubbles.
- :class:`CoinCellPhantom`: the voxel grid (z, y, x): volume fraction of each material,
  the cathode's porosity (a smooth random field) and Li content x in LixNi0.8Mn0.1Co0.1O2
  at a state of charge, with a gradient through the thick cathode (the paper: less Li at the
  far side from the separator than in the middle when charged) and an edge effect where the
  larger anode overhangs the cathode. :meth:`CoinCellPhantom.atoms_per_m3` turns these into
  atoms of each element per voxel, which is all the X-ray physics needs.

Compositions are (formula, density g/cm³); xraylib parses the formulas.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import xraylib
from scipy.ndimage import gaussian_filter

__all__ = ["MATERIALS", "CoinCell", "CoinCellPhantom"]

AVOGADRO = 6.02214076e23

#: Materials other than the cathode, as (formula, density g/cm³).
MATERIALS: dict[str, tuple[str, float]] = {
    "steel": ("Fe0.70Cr0.18Ni0.10Mn0.02", 7.90),
    "li_metal": ("Li", 0.534),
    "separator": ("C3H6", 0.90),  # polypropylene; its pores are counted as electrolyte
    "electrolyte": ("C3H4O3Li0.088P0.088F0.53", 1.32),  # 1 M LiPF6 in ethylene carbonate
}
CATHODE_FORMULA = "Ni0.8Mn0.1Co0.1O2"  # plus x Li per formula unit
CATHODE_DENSITY_G_CM3 = 4.75
_SEPARATOR_ELECTROLYTE = 0.5


@dataclass(frozen=True, kw_only=True)
class CoinCell:
    """CR2032 geometry, metres (z from the bottom of the can)."""

    diameter_m: float = 20.0e-3
    height_m: float = 3.2e-3
    can_thickness_m: float = 0.25e-3
    cathode_radius_m: float = 7.0e-3
    cathode_thickness_m: float = 1.0e-3
    separator_radius_m: float = 9.5e-3
    separator_thickness_m: float = 20e-6
    anode_radius_m: float = 8.0e-3
    anode_thickness_m: float = 0.25e-3
    spacer_radius_m: float = 7.75e-3
    spacer_thickness_m: float = 0.5e-3
    spring_radii_m: tuple[float, float] = (5.0e-3, 7.5e-3)
    spring_fill: float = 0.15
    mean_porosity: float = 0.35
    bubble_radius_m: float = 0.4e-3
    n_bubbles: int = 2

    @property
    def layers_m(self) -> dict[str, tuple[float, float]]:
        """z extent (bottom, top) of each stacked part."""
        z = self.can_thickness_m
        extents = {}
        for name, thickness in (
            ("cathode", self.cathode_thickness_m),
            ("separator", self.separator_thickness_m),
            ("li_metal", self.anode_thickness_m),
            ("spacer", self.spacer_thickness_m),
        ):
            extents[name] = (z, z + thickness)
            z += thickness
        extents["spring"] = (z, self.height_m - self.can_thickness_m)
        return extents


def _z_overlap(n_z: int, voxel_z_m: float, bottom: float, top: float) -> np.ndarray:
    """Fraction of each z voxel inside [bottom, top]: exact, so 20 µm layers are kept."""
    lower = np.arange(n_z) * voxel_z_m
    return np.clip(np.minimum(lower + voxel_z_m, top) - np.maximum(lower, bottom), 0, None) / voxel_z_m


def _disc_fraction(n_xy: int, voxel_m: float, inner: float, outer: float, sub: int = 4) -> np.ndarray:
    """Area fraction of each (y, x) pixel between radii ``inner`` and ``outer``."""
    axis = (np.arange(n_xy * sub) + 0.5) / sub * voxel_m - n_xy * voxel_m / 2
    r = np.hypot(*np.meshgrid(axis, axis, indexing="ij"))
    inside = (r >= inner) & (r < outer)
    return inside.reshape(n_xy, sub, n_xy, sub).mean(axis=(1, 3)).astype(np.float32)


@dataclass
class CoinCellPhantom:
    """The coin cell on a voxel grid.

    Parameters
    ----------
    n_xy : int
        Voxels across the 20 mm cell (80 gives the HEXITEC's 250 µm).
    n_z : int
        Voxels over the 3.2 mm height.
    cell : CoinCell
    rng : numpy.random.Generator
        Draws the porosity field and the bubbles.
    """

    n_xy: int = 80
    n_z: int = 64
    cell: CoinCell = field(default_factory=CoinCell)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __post_init__(self) -> None:
        if self.n_xy < 1 or self.n_z < 1:
            raise ValueError(f"n_xy and n_z must be >= 1, got {self.n_xy}, {self.n_z}")
        c = self.cell
        self.voxel_xy_m = c.diameter_m / self.n_xy
        self.voxel_z_m = c.height_m / self.n_z
        n_xy, n_z = self.n_xy, self.n_z

        def part(radius_in: float, radius_out: float, bottom: float, top: float) -> np.ndarray:
            disc = _disc_fraction(n_xy, self.voxel_xy_m, radius_in, radius_out)
            return _z_overlap(n_z, self.voxel_z_m, bottom, top)[:, None, None] * disc[None]

        layers = c.layers_m
        r_can = c.diameter_m / 2
        steel = part(0, r_can, 0, c.can_thickness_m) + part(0, r_can, c.height_m - c.can_thickness_m, c.height_m)
        steel += part(r_can - c.can_thickness_m, r_can, c.can_thickness_m, c.height_m - c.can_thickness_m)
        steel += part(0, c.spacer_radius_m, *layers["spacer"])
        steel += c.spring_fill * part(*c.spring_radii_m, *layers["spring"])
        cathode_volume = part(0, c.cathode_radius_m, *layers["cathode"])
        separator = part(0, c.separator_radius_m, *layers["separator"])
        rim = part(c.cathode_radius_m, c.separator_radius_m, *layers["cathode"])  # electrolyte at the edge
        bubbles = self._bubbles(layers["cathode"])
        porosity = self._porosity()
        self.fractions = {
            "steel": np.clip(steel, 0, 1).astype(np.float32),
            "cathode_solid": (cathode_volume * (1 - porosity)).astype(np.float32),
            "electrolyte": (
                cathode_volume * porosity + rim * (1 - bubbles) + separator * _SEPARATOR_ELECTROLYTE
            ).astype(np.float32),
            "separator": (separator * (1 - _SEPARATOR_ELECTROLYTE)).astype(np.float32),
            "li_metal": part(0, c.anode_radius_m, *layers["li_metal"]).astype(np.float32),
        }
        self.cathode_mask = cathode_volume > 0.5

    def _porosity(self) -> np.ndarray:
        noise = gaussian_filter(self.rng.standard_normal((self.n_z, self.n_xy, self.n_xy)), sigma=1.5)
        noise /= noise.std() or 1.0
        return np.clip(self.cell.mean_porosity + 0.08 * noise, 0.1, 0.7).astype(np.float32)

    def _bubbles(self, cathode_z: tuple[float, float]) -> np.ndarray:
        """Ar bubbles (volume fraction) in the electrolyte around the cathode's edge."""
        c = self.cell
        z = (np.arange(self.n_z) + 0.5) * self.voxel_z_m
        axis = (np.arange(self.n_xy) + 0.5) * self.voxel_xy_m - c.diameter_m / 2
        zz, yy, xx = np.meshgrid(z, axis, axis, indexing="ij")
        out = np.zeros_like(zz, dtype=np.float32)
        for _ in range(c.n_bubbles):
            angle = self.rng.uniform(0, 2 * math.pi)
            radius = 0.5 * (c.cathode_radius_m + c.separator_radius_m)
            centre = (0.5 * sum(cathode_z), radius * math.sin(angle), radius * math.cos(angle))
            distance = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
            out = np.maximum(out, (distance < c.bubble_radius_m).astype(np.float32))
        return out

    # -- lithium ------------------------------------------------------------------------------

    def lithium_content(self, soc: float) -> np.ndarray:
        """x in LixNi0.8Mn0.1Co0.1O2 per voxel (NaN outside the cathode) at ``soc``.

        Mean x = 1 - 0.75 soc; a linear gradient through the thickness (far side from the
        separator lower by 0.15 soc than the near side) and, at the rim under the
        overhanging anode, 0.05 soc less within 0.5 mm of the edge.
        """
        c = self.cell
        bottom, top = c.layers_m["cathode"]
        z = (np.arange(self.n_z) + 0.5) * self.voxel_z_m
        depth = np.clip((z - bottom) / (top - bottom), 0, 1)  # 0: far side, 1: next to separator
        axis = (np.arange(self.n_xy) + 0.5) * self.voxel_xy_m - c.diameter_m / 2
        r = np.hypot(*np.meshgrid(axis, axis, indexing="ij"))
        edge = np.exp(-np.clip(c.cathode_radius_m - r, 0, None) / 0.5e-3)
        x = 1.0 - 0.75 * soc + 0.15 * soc * (depth[:, None, None] - 0.5) - 0.05 * soc * edge[None]
        return np.where(self.fractions["cathode_solid"] > 0, np.clip(x, 0.0, 1.0), np.nan).astype(np.float32)

    def atoms_per_m3(self, soc: float) -> dict[int, np.ndarray]:
        """Atoms of each element (by Z) per m³ of each voxel at ``soc``."""
        atoms: dict[int, np.ndarray] = {}

        def add(formula: str, density_g_cm3: float, fraction: np.ndarray) -> None:
            for z, mass_fraction in zip(*_parse(formula)[:2], strict=True):
                per_m3 = density_g_cm3 * 1e6 * mass_fraction / xraylib.AtomicWeight(z) * AVOGADRO
                atoms[z] = atoms.get(z, 0) + fraction * np.float32(per_m3)

        for name in ("steel", "li_metal", "separator", "electrolyte"):
            add(*MATERIALS[name], self.fractions[name])
        # the cathode: formula units from the lithiated oxide's density and molar mass, host
        # atoms per formula unit, and x Li of each
        formula_per_m3 = CATHODE_DENSITY_G_CM3 * 1e6 / _parse("Li" + CATHODE_FORMULA)[3] * AVOGADRO
        host_elements, _, host_atoms, _ = _parse(CATHODE_FORMULA)
        solid = self.fractions["cathode_solid"]
        for z, per_formula in zip(host_elements, host_atoms, strict=True):
            atoms[z] = atoms.get(z, 0) + solid * np.float32(per_formula * formula_per_m3)
        x = np.nan_to_num(self.lithium_content(soc))
        atoms[3] = atoms.get(3, 0) + solid * x * np.float32(formula_per_m3)
        return atoms


@functools.cache
def _parse(formula: str) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...], float]:
    """``formula``'s elements, mass fractions, atoms per formula unit and molar mass (g/mol).

    Parsed once per formula: xraylib 4.3's ``CompoundParser`` leaks the dict it returns (about
    0.5 kB a call), and the simulated cell is asked for its atoms at every projection batch and
    acquisition (the soak's main job grew by 1 MB per XCT/XCS pair before this cache)."""
    compound = xraylib.CompoundParser(formula)
    return (tuple(compound["Elements"]), tuple(compound["massFractions"]), tuple(compound["nAtoms"]),
            float(compound["molarMass"]))  # fmt: skip
