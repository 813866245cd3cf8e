"""XRD-CT of a cylindrical cell: zigzag scans of Pilatus frames with a known ground truth.

Base: the XRD-CT paper (Small Methods 2021): 103.5 keV (λ = 0.11979 Å), Pilatus3 X CdTe 2M,
20 µm translation steps, 0-180°.

- From :mod:`.xrdct_presets` (re-exported): :class:`XrdctPreset`, :data:`PRESETS`, :func:`pilatus_detector`.
- :class:`XrdctSimulation`: the cell at a state of charge. Per-voxel phase fractions and
  NMC lattice (:class:`CellState`), the 1D pattern of every (angle, translation) ray, the
  Pilatus frame of it, the zigzag scan, the CeO2 calibrant frame and the ground truth.

How frames stay cheap: a ray's pattern is linear in the phase contents along it, so the
forward projections of each basis map (phase fraction, or NMC fraction in a narrow lattice
bin) are computed once with astra, and a ray's pattern is their weighted sum of basis
patterns. A frame then takes the pattern at every pixel's 2θ bin (pixel-to-bin table from
pyFAI, computed once), times solid angle and polarisation, plus air scatter, with Poisson
noise, zingers, hot pixels and the detector's gaps (-1 in gaps, as Pilatus writes).

Zigzag convention: angle line ``i`` (rotation ``angle_range[0] + i * step``) runs towards
increasing translation index when ``i`` is even and back when it is odd. Each frame is
tagged with both indices, and frames are placed by them, never by order.
Centre of rotation (truth): the rotation axis projects onto translation index
``(n_translations - 1) / 2 + center_offset_px``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import astra
import fabio
import h5py
import numpy as np
import xraylib
from pyFAI.calibrant import get_calibrant
from pyFAI.crystallography.resolution import Constant
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from .cell_phantom import CylindricalCell, lag_field, material_fractions
from .crystal import HC_KEV_ANGSTROM
from .noise import poisson_counts
from .phases import (
    AL_FCC,
    CU_FCC,
    FE_BCC,
    GRAPHITE,
    LIC6,
    LIC12,
    LIC30,
    SEPARATOR,
    nmc532,
    nmc532_lattice,
    pattern_of,
)
from .xrdct_presets import PRESETS, WAVELENGTH_ANGSTROM, XrdctPreset, pilatus_detector

__all__ = ["PRESETS", "CellState", "XrdctPreset", "XrdctSimulation", "ZigzagFrame", "pilatus_detector"]

_ANODE_STAGES = (("graphite", 0.0), ("LiC30", 0.2), ("LiC12", 0.5), ("LiC6", 1.0))  # x in LixC6
SECONDARY_NMC_LATTICE_ANGSTROM = (2.869, 14.26)  # inactive secondary NMC532: fixed lattice
_LAG_STRENGTH = 0.4  # how far lagging places stay behind the cell's state of charge
# material -> (formula, density g/cm³ as present: coatings are 70 % solid)
_ATTENUATING = {
    "casing": ("Fe", 7.87),
    "cu": ("Cu", 8.96),
    "al": ("Al", 2.70),
    "anode": ("C", 0.7 * 2.26),
    "cathode": ("LiNi0.5Mn0.3Co0.2O2", 0.7 * 4.75),
    "separator": ("C2H4", 0.95 * 0.6),
}


@dataclass(frozen=True)
class CellState:
    """Per-voxel truth of the cell at one state of charge (maps are (n, n), y by x).

    ``fractions``: volume fraction of each phase; ``nmc_lithiation``: 0 (charged end of the
    window) to 1 (discharged end), NaN where there is no cathode; ``nmc_a_angstrom``/``nmc_c_angstrom``:
    lattice of the primary NMC532, Å, NaN where there is none.
    """

    soc: float
    fractions: dict[str, np.ndarray]
    nmc_lithiation: np.ndarray
    nmc_a_angstrom: np.ndarray
    nmc_c_angstrom: np.ndarray


class ZigzagFrame(NamedTuple):
    angle_index: int
    translation_index: int
    angle_deg: float
    translation_mm: float
    frame: np.ndarray


def _anode_stage_fractions(x: np.ndarray) -> dict[str, np.ndarray]:
    """Two-phase mixtures between successive stages for Li content x (Li per C6)."""
    out = {name: np.zeros_like(x) for name, _ in _ANODE_STAGES}
    for (low_name, low_x), (high_name, high_x) in itertools.pairwise(_ANODE_STAGES):
        inside = (x >= low_x) & (x <= high_x)
        weight = (x - low_x) / (high_x - low_x)
        out[low_name] = np.where(inside & (x < high_x), 1 - weight, out[low_name])
        out[high_name] = np.where(inside, weight, out[high_name])
    return out


@dataclass
class XrdctSimulation:
    """An XRD-CT experiment on the simulated cell.

    Parameters
    ----------
    preset : XrdctPreset or str
    soc : float
        Cell state of charge, 0 (discharged) to 1 (charged).
    seed : int
        Seeds the secondary-phase hotspots and every frame's noise (frame noise depends only
        on the seed and the frame's indices, so any subset of frames is reproducible).
    center_offset_px : float
        Rotation axis offset from the middle of the translation range, pixels.
    angle_range_deg : (float, float)
    cell : CylindricalCell
    n_nmc_bins : int
        Lattice bins that represent the primary NMC's continuous lattice.
    attenuation : bool
        Attenuate each ray by the transmission of its whole chord through the cell (the
        zero-order self-absorption model the paper corrected for; at 2θ < 11° the
        diffracted beam's path is the incident one's), with xraylib's total attenuation at
        the beam energy. Off by default, so that ray patterns stay linear in the maps.
    """

    preset: XrdctPreset | str = "tiny"
    soc: float = 0.0
    seed: int = 0
    center_offset_px: float = 0.37
    angle_range_deg: tuple[float, float] = (0.0, 180.0)
    cell: CylindricalCell = field(default_factory=CylindricalCell)
    n_nmc_bins: int = 12
    attenuation: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.preset, str):
            if self.preset not in PRESETS:
                raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
            self.preset = PRESETS[self.preset]
        if not 0.0 <= self.soc <= 1.0:
            raise ValueError(f"soc must be within [0, 1], got {self.soc}")
        p = self.preset
        self.n_px = p.n_translations
        self.detector = pilatus_detector(p.detector_binning)
        rows, cols = self.detector.shape
        size1, size2 = rows * self.detector.pixel1, cols * self.detector.pixel2
        # beam slightly off the detector centre and a small tilt, as at a real beamline
        self.integrator = AzimuthalIntegrator(
            dist=1.0, poni1=0.52 * size1, poni2=0.47 * size2, rot1=0.002, rot2=-0.001,
            detector=self.detector, wavelength=WAVELENGTH_ANGSTROM * 1e-10,
        )  # fmt: skip
        tth = self.integrator.center_array(unit="2th_deg")
        self.radial_edges_deg = np.linspace(0.3, float(tth.max()) + 1e-6, p.n_radial + 1)
        self.radial_deg = 0.5 * (self.radial_edges_deg[1:] + self.radial_edges_deg[:-1])
        self.gaps = self.detector.mask.astype(bool)
        bins = np.floor((tth - self.radial_edges_deg[0]) / np.diff(self.radial_edges_deg[:2])).astype(np.int64)
        # what to integrate: the gaps and the pixels outside the simulated 2θ range
        self.mask = self.gaps | (bins < 0) | (bins >= p.n_radial)
        self._pixel_bin = np.clip(bins, 0, p.n_radial - 1).ravel()
        corrections = self.integrator.solidAngleArray() * self.integrator.polarization(factor=0.99)
        self._pixel_weight = corrections.astype(np.float32).ravel()
        self._hot_pixels = np.random.default_rng([self.seed, 7_777]).integers(0, self._pixel_bin.size, 8)
        self.angles_deg = np.linspace(*self.angle_range_deg, p.n_angles, endpoint=False)
        self.translations_mm = (np.arange(p.n_translations) - (p.n_translations - 1) / 2) * p.translation_step_m * 1e3
        self._materials = material_fractions(self.cell, self.n_px, p.translation_step_m)
        self._lag = lag_field(self.cell, self.n_px, p.translation_step_m)
        self._secondary = self._secondary_hotspots()
        self.state = self.cell_state(self.soc)
        self._build_rays()

    # -- the cell ---------------------------------------------------------------------------

    def with_soc(self, soc: float) -> XrdctSimulation:
        """The same cell and scan at another state of charge (e.g. the battery model's),
        for the frames of the next operando scan."""
        return replace(self, soc=soc)

    @property
    def center_of_rotation_px(self) -> float:
        """Translation index onto which the rotation axis projects (truth)."""
        return (self.preset.n_translations - 1) / 2 + self.center_offset_px

    def _secondary_hotspots(self) -> np.ndarray:
        """Fraction of the cathode's NMC that is the inactive secondary phase (a few blobs)."""
        rng = np.random.default_rng(self.seed)
        n = self.n_px
        y, x = np.mgrid[0:n, 0:n]
        cathode = np.argwhere(self._materials["cathode"] > 0.2)
        share = np.zeros((n, n), np.float32)
        radius_px = max(1.5, 0.25e-3 / self.preset.translation_step_m)
        for cy, cx in cathode[rng.choice(len(cathode), size=4, replace=False)]:
            share += 0.5 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius_px**2))
        return np.clip(share, 0, 0.5)

    def cell_state(self, soc: float) -> CellState:
        """Phase fractions and NMC lattice per voxel at state of charge ``soc``.

        Anode: lagging places (:func:`~.cell_phantom.lag_field`) stay behind the cell, holding
        less Li at charge (LiC12 for LiC6) and more at discharge (LiC30 for graphite).
        Cathode: as the paper found, the NMC lattice is uniform when charged, and at
        discharge the Fe-Al-Sep places hold more Li (the discharged-end lattice, 2.859 /
        14.316 Å) than the bulk (lithiation 0.85 of the window). Active material fills 70 %
        of a coating.
        """
        m, lag = self._materials, self._lag
        anode_x = np.clip(soc + _LAG_STRENGTH * lag * (0.5 - soc), 0, 1)
        nmc_lithiation = np.clip(0.85 * (1 - soc) + 0.15 * lag * (1 - soc) / 0.85, 0, 1)
        solid = 0.7
        fractions = {"Fe": m["casing"], "Cu": m["cu"], "Al": m["al"], "separator": m["separator"]}
        for name, share in _anode_stage_fractions(anode_x).items():
            fractions[name] = (solid * m["anode"] * share).astype(np.float32)
        fractions["NMC532"] = (solid * m["cathode"] * (1 - self._secondary)).astype(np.float32)
        fractions["NMC532-secondary"] = (solid * m["cathode"] * self._secondary).astype(np.float32)
        a, c = nmc532_lattice(nmc_lithiation)
        has_nmc = fractions["NMC532"] > 0
        return CellState(
            soc=soc,
            fractions=fractions,
            nmc_lithiation=np.where(has_nmc, nmc_lithiation, np.nan).astype(np.float32),
            nmc_a_angstrom=np.where(has_nmc, a, np.nan).astype(np.float32),
            nmc_c_angstrom=np.where(has_nmc, c, np.nan).astype(np.float32),
        )

    # -- rays -------------------------------------------------------------------------------

    def _basis(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, fraction map, 1D pattern) whose products sum to every voxel's pattern."""
        tth, fwhm = self.radial_deg, self.preset.fwhm_deg
        fractions = self.state.fractions
        components = {"Fe": FE_BCC, "Cu": CU_FCC, "Al": AL_FCC, "separator": SEPARATOR, "graphite": GRAPHITE}
        components |= {"LiC30": LIC30, "LiC12": LIC12, "LiC6": LIC6}
        components["NMC532-secondary"] = nmc532(*SECONDARY_NMC_LATTICE_ANGSTROM, name="NMC532-secondary")
        basis = [
            (name, fractions[name], pattern_of(phase, tth, WAVELENGTH_ANGSTROM, fwhm))
            for name, phase in components.items()
        ]
        # the primary NMC's continuous lattice, as linear weights on a fine grid of lattices
        grid = np.linspace(0.0, 1.0, self.n_nmc_bins)
        position = np.nan_to_num(self.state.nmc_lithiation) * (self.n_nmc_bins - 1)
        lower = np.floor(position).astype(int)
        weight = position - lower
        for k, lithiation in enumerate(grid):
            share = np.where(lower == k, 1 - weight, 0) + np.where(lower == k - 1, weight, 0)
            phase = nmc532(*nmc532_lattice(lithiation), li_occupancy=0.5 + 0.5 * lithiation)
            basis.append(
                (f"NMC532@{k}", fractions["NMC532"] * share, pattern_of(phase, tth, WAVELENGTH_ANGSTROM, fwhm))
            )
        return basis

    def _project(self, image: np.ndarray) -> np.ndarray:
        """Line integrals (n_angles, n_translations) of a map, in voxel lengths (astra)."""
        n = self.n_px
        volume = astra.create_vol_geom(n, n)
        geometry = astra.create_proj_geom("parallel", 1.0, n, np.radians(self.angles_deg))
        # astra's post-alignment shifts the detector: a shift of -d puts the projected axis
        # d pixels towards higher translation index
        geometry = astra.geom_postalignment(geometry, -self.center_offset_px)
        projector = astra.create_projector("linear", geometry, volume)
        try:
            sinogram_id, sinogram = astra.create_sino(image.astype(np.float32), projector)
            astra.data2d.delete(sinogram_id)
        finally:
            astra.projector.delete(projector)
        return sinogram

    def attenuation_map_per_m(self) -> np.ndarray:
        """Linear attenuation coefficient (1/m) per voxel at the beam energy (xraylib)."""
        energy_kev = HC_KEV_ANGSTROM / WAVELENGTH_ANGSTROM
        mu = np.zeros((self.n_px, self.n_px), np.float32)
        for material, (formula, density_g_cm3) in _ATTENUATING.items():
            mu_per_cm = xraylib.CS_Total_CP(formula, energy_kev) * density_g_cm3
            mu += self._materials[material] * np.float32(mu_per_cm * 100)
        return mu

    def _build_rays(self) -> None:
        basis = self._basis()
        self.basis_names = [name for name, _, _ in basis]
        self._ray_weights = np.stack([self._project(fraction) for _, fraction, _ in basis], axis=-1).astype(np.float32)
        if self.attenuation:
            chord = self._project(self.attenuation_map_per_m()) * self.preset.translation_step_m
            self.transmission = np.exp(-chord).astype(np.float32)
            self._ray_weights *= self.transmission[..., None]
        else:
            self.transmission = np.ones(self._ray_weights.shape[:2], np.float32)
        self._basis_patterns = np.stack([pattern for _, _, pattern in basis]).astype(np.float32)
        # air scatter, the same in every frame: falls off with angle (what edge rays show)
        self.air_pattern = (0.02 * np.exp(-self.radial_deg / 1.5) + 0.002).astype(np.float32)
        brightest = float((self._ray_weights.reshape(-1, len(basis)) @ self._basis_patterns).max())
        counts = self.preset.peak_counts * self.preset.detector_binning**2  # a binned pixel sums its pixels
        self._scale = counts / (brightest * float(self._pixel_weight.max()))
        self.air_pattern *= brightest

    def ray_pattern(self, angle_index: int, translation_index: int) -> np.ndarray:
        """Noise-free 1D pattern (on :attr:`radial_deg`) of one ray, air scatter included."""
        return self._ray_weights[angle_index, translation_index] @ self._basis_patterns + self.air_pattern

    def sinogram(self, angle_indices: slice = slice(None)) -> np.ndarray:
        """Noise-free 1D patterns (n_angles, n_translations, n_radial) without air scatter."""
        return np.einsum("atb,br->atr", self._ray_weights[angle_indices], self._basis_patterns)

    # -- detector ---------------------------------------------------------------------------

    def expected_frame(self, pattern: np.ndarray) -> np.ndarray:
        """Expected counts (float32, detector shape) for a 1D pattern on the radial grid."""
        values = pattern.astype(np.float32)[self._pixel_bin] * self._pixel_weight * np.float32(self._scale)
        return values.reshape(self.detector.shape)

    def frame(self, angle_index: int, translation_index: int) -> np.ndarray:
        """The Pilatus frame (int32 counts; -1 in gaps) of one ray, with noise."""
        rng = np.random.default_rng([self.seed, angle_index, translation_index])
        counts = poisson_counts(rng, self.expected_frame(self.ray_pattern(angle_index, translation_index)))
        flat = counts.reshape(-1)
        zingers = rng.integers(0, flat.size, rng.poisson(2e-6 * flat.size))
        flat[zingers] += rng.integers(500, 50_000, zingers.size, dtype=np.int32)
        flat[self._hot_pixels] = 2**20 - 1
        counts[self.gaps] = -1
        return counts

    def zigzag(self) -> Iterator[ZigzagFrame]:
        """The scan's frames in acquisition order (see the module docstring)."""
        for angle_index, angle in enumerate(self.angles_deg):
            order = range(self.preset.n_translations)
            for translation_index in order if angle_index % 2 == 0 else reversed(order):
                yield ZigzagFrame(
                    angle_index,
                    translation_index,
                    float(angle),
                    float(self.translations_mm[translation_index]),
                    self.frame(angle_index, translation_index),
                )

    # -- calibration and truth --------------------------------------------------------------

    def calibrant_frame(self, *, peak_counts: float = 2000.0) -> np.ndarray:
        """A CeO2 calibrant frame (int32, gaps -1) at this geometry, made by pyFAI's own
        calibrant model, with Poisson noise."""
        calibrant = get_calibrant("CeO2")
        calibrant.wavelength = self.integrator.wavelength
        image = calibrant.fake_calibration_image(
            self.integrator, Imax=peak_counts, Imin=2.0, resolution=Constant(self.preset.fwhm_deg)
        )
        counts = np.random.default_rng([self.seed, 2]).poisson(image).astype(np.int32)
        counts[self.gaps] = -1
        return counts

    def write_poni(self, path: Path) -> Path:
        """Write the geometry that made every frame as a pyFAI PONI file."""
        self.integrator.write(str(path))
        return Path(path)

    def write_calibration(self, folder: Path) -> dict[str, Path]:
        """What a beamline calibration leaves: ``CeO2.edf`` (the calibrant frame),
        ``mask.edf`` (1 = masked) and ``geometry.poni``, readable by ``pyFAI-calib2``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"calibrant": folder / "CeO2.edf", "mask": folder / "mask.edf", "poni": folder / "geometry.poni"}
        fabio.edfimage.EdfImage(data=self.calibrant_frame()).write(str(paths["calibrant"]))
        fabio.edfimage.EdfImage(data=self.mask.astype(np.int8)).write(str(paths["mask"]))
        self.write_poni(paths["poni"])
        return paths

    def write_ground_truth(self, path: Path) -> Path:
        """Phase and lattice maps, the noise-free 1D sinogram volume, the geometry and the
        mask, in one HDF5 file (``/truth``)."""
        path = Path(path)
        with h5py.File(path, "w") as file:
            truth = file.create_group("truth")
            truth.attrs.update(
                preset=self.preset.name, soc=self.soc, seed=self.seed,
                center_of_rotation_px=self.center_of_rotation_px, wavelength_angstrom=WAVELENGTH_ANGSTROM,
                pixel_size_m=self.preset.translation_step_m, zigzag="even angle lines run to increasing translation",
            )  # fmt: skip
            for name, fraction in self.state.fractions.items():
                truth.create_dataset(f"phase_fractions/{name}", data=fraction, compression="gzip")
            for name in ("nmc_lithiation", "nmc_a_angstrom", "nmc_c_angstrom"):
                truth.create_dataset(name, data=getattr(self.state, name), compression="gzip")
            truth.create_dataset("radial_2th_deg", data=self.radial_deg)
            truth.create_dataset("angles_deg", data=self.angles_deg)
            truth.create_dataset("translations_mm", data=self.translations_mm)
            truth.create_dataset("air_pattern", data=self.air_pattern)
            truth.create_dataset("mask", data=self.mask.astype(np.uint8), compression="gzip")
            truth["poni"] = json.dumps(self.integrator.get_config(), default=str)
            shape = (self.preset.n_angles, self.preset.n_translations, self.preset.n_radial)
            sinogram = truth.create_dataset("sinogram", shape=shape, dtype=np.float32, chunks=(1, *shape[1:]))
            block = max(1, 2**27 // (shape[1] * shape[2] * 4))  # 128 MiB of sinogram at a time
            for start in range(0, shape[0], block):
                sinogram[start : start + block] = self.sinogram(slice(start, start + block))
        return path
