"""X-ray CT projections of the coin cell, as a PCO.Edge camera records them.

- :func:`attenuation_per_m`: linear attenuation coefficient of every voxel at the beam
  energy, from its atoms and xraylib's total cross sections.
- :class:`XctScan`: parallel-beam projections over 360° (astra, slice by slice about the
  cell's vertical axis): Beer-Lambert transmission, a flat field with a beam profile, a
  dark level, Poisson noise on the photon counts and a few defective detector columns
  (ring artefacts), plus flat and dark images. Camera rows are the phantom's z slices,
  columns its x pixels (``n_cols`` may add air on both sides).

Energies in keV, lengths in m, angles in rad internally (degrees only in the result's
``angles_deg`` for the plans). Deterministic for a given ``rng``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import astra
import numpy as np
import xraylib

from .coin_cell import CoinCellPhantom

__all__ = ["XctScan", "attenuation_per_m"]


def attenuation_per_m(atoms_per_m3: dict[int, np.ndarray], energy_kev: float) -> np.ndarray:
    """μ (1/m) per voxel: Σ_Z n_Z σ_Z with σ_Z = CS_Total(Z, E) · A_Z / N_A."""
    mu = None
    for z, density in atoms_per_m3.items():
        sigma_m2 = xraylib.CS_Total(z, energy_kev) * xraylib.AtomicWeight(z) / 6.02214076e23 * 1e-4
        term = density * np.float32(sigma_m2)
        mu = term if mu is None else mu + term
    return mu


@dataclass
class XctScan:
    """Projections of a coin-cell phantom.

    Parameters
    ----------
    phantom : CoinCellPhantom
    n_projections : int
        Over ``angle_range_deg`` (the paper: 3600 over 360°).
    energy_kev : float
        Beam energy.
    incident_counts : float
        Flat-field counts per pixel (sets the noise).
    n_defective_columns : int
        Columns whose gain drifted (0.9-1.1) after the flats were taken: flat correction
        cannot remove it, and the reconstruction shows rings.
    n_cols : int, optional
        Camera columns (>= phantom width); default the phantom width plus 10 % air.
    rng : numpy.random.Generator
    """

    phantom: CoinCellPhantom
    n_projections: int = 180
    energy_kev: float = 114.64
    incident_counts: float = 20_000.0
    dark_counts: float = 100.0
    n_defective_columns: int = 3
    angle_range_deg: tuple[float, float] = (0.0, 360.0)
    n_cols: int | None = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __post_init__(self) -> None:
        if self.n_projections < 1 or self.n_defective_columns < 0 or self.incident_counts <= 0:
            raise ValueError("need n_projections >= 1, n_defective_columns >= 0 and incident_counts > 0")
        n_xy = self.phantom.n_xy
        self.n_cols = self.n_cols or round(n_xy * 1.1 / 2) * 2
        if self.n_cols < n_xy:
            raise ValueError(f"n_cols must be at least the phantom width {n_xy}, got {self.n_cols}")
        self.n_rows = self.phantom.n_z
        self.angles_deg = np.linspace(*self.angle_range_deg, self.n_projections, endpoint=False)
        columns = np.arange(self.n_cols)
        self.flat_profile = (1.0 - 0.3 * ((columns - self.n_cols / 2) / self.n_cols) ** 2).astype(np.float32)
        self.column_gain = np.ones(self.n_cols, np.float32)
        bad = self.rng.choice(self.n_cols, self.n_defective_columns, replace=False)
        self.column_gain[bad] = self.rng.uniform(0.9, 1.1, self.n_defective_columns)
        self.defective_columns = np.sort(bad)

    def line_integrals(self, soc: float) -> np.ndarray:
        """∫μ dl, shape (n_projections, n_rows, n_cols), noise-free (the truth)."""
        return self.line_integrals_at(self.angles_deg, soc)

    def line_integrals_at(self, angles_deg: np.ndarray, soc: float) -> np.ndarray:
        """∫μ dl at any rotation angles (degrees), shape (n_angles, n_rows, n_cols)."""
        angles_deg = np.atleast_1d(np.asarray(angles_deg, float))
        mu = attenuation_per_m(self.phantom.atoms_per_m3(soc), self.energy_kev) * np.float32(self.phantom.voxel_xy_m)
        n_xy = self.phantom.n_xy
        volume = astra.create_vol_geom(n_xy, n_xy)
        geometry = astra.create_proj_geom("parallel", 1.0, self.n_cols, np.radians(angles_deg))
        projector = astra.create_projector("linear", geometry, volume)
        out = np.empty((angles_deg.size, self.n_rows, self.n_cols), np.float32)
        try:
            for row in range(self.n_rows):
                sinogram_id, sinogram = astra.create_sino(mu[row], projector)
                astra.data2d.delete(sinogram_id)
                out[:, row, :] = sinogram
        finally:
            astra.projector.delete(projector)
        return out

    def _counts(self, expected: np.ndarray) -> np.ndarray:
        return np.clip(self.rng.poisson(expected), 0, 65535).astype(np.uint16)

    def flats(self, n: int = 10) -> np.ndarray:
        """Flat fields (no sample), uint16, shape (n, n_rows, n_cols), taken before the
        defective columns drifted: flat correction leaves their error in (rings)."""
        expected = self.incident_counts * self.flat_profile + self.dark_counts
        return self._counts(np.broadcast_to(expected, (n, self.n_rows, self.n_cols)))

    def darks(self, n: int = 10) -> np.ndarray:
        """Dark images (beam off), uint16."""
        return self._counts(np.full((n, self.n_rows, self.n_cols), self.dark_counts))

    def projections(self, soc: float) -> np.ndarray:
        """The camera's projections (uint16, shape (n_projections, n_rows, n_cols))."""
        return self.projections_at(self.angles_deg, soc)

    def projections_at(self, angles_deg: np.ndarray, soc: float) -> np.ndarray:
        """Projections at any rotation angles (degrees), uint16 (n_angles, n_rows, n_cols)."""
        transmission = np.exp(-self.line_integrals_at(angles_deg, soc))
        expected = self.incident_counts * self.flat_profile * self.column_gain * transmission + self.dark_counts
        return self._counts(expected)
