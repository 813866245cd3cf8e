"""X-ray Compton scattering (XCS) spectra from the physics, per HEXITEC pixel.

- :func:`element_spectrum`: scattered photons per atom of element Z, per unit solid angle
  and energy, on an energy grid: the Compton band from the tabulated Compton profile J(p_z)
  (xraylib ``ComptonProfile``) in the impulse approximation, (r0²/2) KN(E2) J(p_z) dp_z/dE2,
  and the elastic (Rayleigh) line at the beam energy (xraylib ``DCS_Rayl``).
- :class:`XcsModel`: the measurement: beam energy, angle, the detector's resolution, CdTe
  escape and self-fluorescence, the W pinhole's and Pb shield's fluorescence lines. It turns
  the atoms under each pixel (the sheet beam through the phantom) into expected spectra on
  the HEXITEC's 0-200 keV, 0.2 keV bins, and holds the element and background spectra that
  :mod:`~simulators.hexitec` samples photons from.

Energies in keV, lengths in m, angles in rad inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xraylib
import xraylib_np
from scipy.ndimage import convolve1d
from scipy.special import erf

from streaming.processing.compton import cross_section_factor, dpz_denergy, pz_from_energy

from .coin_cell import CoinCellPhantom

__all__ = ["HEXITEC_ENERGY_EDGES_KEV", "XcsModel", "element_spectrum", "sheet_column_atoms"]

HEXITEC_ENERGY_EDGES_KEV = np.linspace(0.0, 200.0, 1001)
CLASSICAL_ELECTRON_RADIUS_M = 2.8179403262e-15
_FINE_STEP_KEV = 0.01
_FINE_MIN_KEV, _FINE_MAX_KEV = 20.0, 130.0  # from below the Cd/Te Kα lines to above the beam
_MAX_PZ_AU = 100.0
#: CdTe detector: Cd and Te K absorption edges and Kα lines, keV
CD_K_EDGE_KEV, TE_K_EDGE_KEV = 26.711, 31.814
CD_KA_KEV, TE_KA_KEV = 23.17, 27.47
#: W (pinhole) and Pb (shield) K lines: energy (keV) and relative intensity
_SHIELD_LINES = ((57.98, 0.58), (59.32, 1.0), (67.24, 0.33), (72.80, 0.60), (74.97, 1.0), (84.94, 0.35))


def element_spectrum(z: int, energy_kev: np.ndarray, incident_kev: float, angle_rad: float) -> np.ndarray:
    """Compton band of one atom of element ``z``: d²σ/dΩdE2 in m²/sr/keV on ``energy_kev``."""
    pz = np.abs(pz_from_energy(energy_kev, incident_kev, angle_rad))
    # xraylib tabulates J up to 100 a.u.; beyond, the profile is negligible (< 1e-7 of its peak)
    profile = np.where(pz <= _MAX_PZ_AU, xraylib_np.ComptonProfile(np.array([z]), np.minimum(pz, _MAX_PZ_AU))[0], 0.0)
    return (
        CLASSICAL_ELECTRON_RADIUS_M**2
        / 2
        * cross_section_factor(energy_kev, incident_kev, angle_rad)
        * profile
        * dpz_denergy(energy_kev, incident_kev, angle_rad)
    )


def rayleigh_per_atom(z: int, incident_kev: float, angle_rad: float) -> float:
    """Elastic scattering of one atom, dσ/dΩ in m²/sr (xraylib, form factor included)."""
    return xraylib.DCS_Rayl(z, incident_kev, angle_rad) * xraylib.AtomicWeight(z) / 6.02214076e23 * 1e-4


def sheet_column_atoms(
    phantom: CoinCellPhantom, soc: float, z_centre_m: float, thickness_m: float, n_pixels: int = 80
) -> dict[int, np.ndarray]:
    """Atoms of each element lit by a horizontal sheet beam under each detector pixel.

    The sheet (``thickness_m`` thick, centred at height ``z_centre_m``) crosses the whole
    cell; each of the ``n_pixels`` x ``n_pixels`` pixels sees the column of voxels below it
    (the pinhole images the sheet 1:1 as in the paper; its inversion is left out).

    Returns
    -------
    dict of int to ndarray, shape (n_pixels, n_pixels)
        Atoms per pixel, by atomic number, at state of charge ``soc``.
    """
    if phantom.n_xy % n_pixels:
        raise ValueError(f"phantom width {phantom.n_xy} must be a multiple of {n_pixels} detector pixels")
    lower = np.arange(phantom.n_z) * phantom.voxel_z_m
    top, bottom = z_centre_m + thickness_m / 2, z_centre_m - thickness_m / 2
    overlap = np.clip(np.minimum(lower + phantom.voxel_z_m, top) - np.maximum(lower, bottom), 0, None)
    k = phantom.n_xy // n_pixels
    voxel_area = phantom.voxel_xy_m**2
    return {
        z: np.tensordot(overlap, density, axes=(0, 0)).reshape(n_pixels, k, n_pixels, k).sum(axis=(1, 3)) * voxel_area
        for z, density in phantom.atoms_per_m3(soc).items()
    }


@dataclass(frozen=True, kw_only=True)
class XcsModel:
    """The XCS measurement model (defaults: the paper's set-up).

    Attributes
    ----------
    incident_kev, angle_deg : float
        Beam energy and scattering angle (detector at 90° above the sheet).
    resolution_fwhm_kev : float
        Detector resolution (0.93 keV FWHM at 59.5 keV in the paper).
    cd_escape, te_escape : float
        Probability that a photon above the Cd / Te K edge loses a Kα fluorescence photon.
    shield_fraction : float
        W/Pb fluorescence photons, as a fraction of all detected photons, spread evenly.
    acceptance_deg : float
        Full angular acceptance of the pinhole (5.7° in the paper): the Compton energy moves
        by ~17 keV/rad around 90°, so this broadens the band about as much as the detector
        resolution does; spectra are averaged over it.
    """

    incident_kev: float = 114.64
    angle_deg: float = 90.0
    resolution_fwhm_kev: float = 0.93
    cd_escape: float = 0.04
    te_escape: float = 0.05
    shield_fraction: float = 0.02
    acceptance_deg: float = 5.7

    def __post_init__(self) -> None:
        if not 0 < self.incident_kev <= 200 or not 0 < self.angle_deg < 180:
            raise ValueError(
                f"need 0 < incident_kev <= 200 and 0 < angle_deg < 180, got {self.incident_kev}, {self.angle_deg}"
            )
        if self.resolution_fwhm_kev <= 0 or self.acceptance_deg < 0:
            raise ValueError("resolution_fwhm_kev must be > 0 and acceptance_deg >= 0")
        if min(self.cd_escape, self.te_escape) < 0 or self.cd_escape + self.te_escape > 1:
            raise ValueError("escape probabilities must be >= 0 and sum to at most 1")
        if not 0 <= self.shield_fraction < 1:
            raise ValueError(f"shield_fraction must be within [0, 1), got {self.shield_fraction}")

    @property
    def fine_energy_kev(self) -> np.ndarray:
        """Centres of the fine energy grid (0.01 keV steps from 20 to 130 keV) the physics
        is computed on before binning."""
        return np.arange(_FINE_MIN_KEV, _FINE_MAX_KEV, _FINE_STEP_KEV) + _FINE_STEP_KEV / 2

    @property
    def angle_rad(self) -> float:
        return math.radians(self.angle_deg)

    def element_source(self, z: int) -> np.ndarray:
        """Photons per atom per sr on the fine grid (per bin), Compton band plus the elastic
        line, before the detector."""
        grid = self.fine_energy_kev
        half = math.radians(self.acceptance_deg) / 2
        angles = self.angle_rad + np.linspace(-half, half, 9)
        compton = np.mean([element_spectrum(z, grid, self.incident_kev, angle) for angle in angles], axis=0)
        per_bin = compton * _FINE_STEP_KEV
        per_bin[np.argmin(np.abs(grid - self.incident_kev))] += rayleigh_per_atom(z, self.incident_kev, self.angle_rad)
        return per_bin

    def shield_source(self) -> np.ndarray:
        """W/Pb fluorescence line shape on the fine grid, unit sum."""
        grid = self.fine_energy_kev
        lines = np.zeros_like(grid)
        for energy, weight in _SHIELD_LINES:
            lines[np.argmin(np.abs(grid - energy))] += weight
        return lines / lines.sum()

    # -- the detector, applied to expected spectra ----------------------------------------------

    def escape(self, fine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Photons after CdTe K escape on the fine grid, and the number escaped of each kind
        (Cd, Te) per spectrum: the escaping share moves down by the Kα energy."""
        grid = self.fine_energy_kev
        out = np.array(fine, dtype=float, copy=True)
        escaped = []
        for edge, line, probability in (
            (CD_K_EDGE_KEV, CD_KA_KEV, self.cd_escape),
            (TE_K_EDGE_KEV, TE_KA_KEV, self.te_escape),
        ):
            escaping = fine * probability * (grid > edge)
            shift = round(line / _FINE_STEP_KEV)
            out -= escaping
            out[..., :-shift] += escaping[..., shift:]
            escaped.append(escaping.sum(axis=-1))
        return out, np.stack(escaped, axis=-1)

    def to_hexitec_bins(self, fine: np.ndarray, *, resolution_fwhm_kev: float | None = None) -> np.ndarray:
        """Photons on the fine grid (..., n_fine) -> expected counts in the HEXITEC's 0.2 keV
        bins (..., 1000) with the detector's Gaussian resolution (counts conserved); a
        ``resolution_fwhm_kev`` other than the model's one (e.g. of summed events)."""
        edges = HEXITEC_ENERGY_EDGES_KEV
        width = edges[1] - edges[0]
        index = np.clip(((self.fine_energy_kev - edges[0]) / width).astype(int), 0, edges.size - 2)
        bins = np.arange(edges.size - 1)
        start, stop = np.searchsorted(index, bins, "left"), np.searchsorted(index, bins, "right")
        cumulative = np.concatenate([np.zeros((*fine.shape[:-1], 1)), np.cumsum(fine, axis=-1)], axis=-1)
        binned = cumulative[..., stop] - cumulative[..., start]
        fwhm_kev = self.resolution_fwhm_kev if resolution_fwhm_kev is None else resolution_fwhm_kev
        sigma_bins = fwhm_kev / (2 * math.sqrt(2 * math.log(2))) / width
        half = math.ceil(6 * sigma_bins)
        j = np.arange(-half, half + 1)
        kernel = 0.5 * (erf((j + 0.5) / (sigma_bins * math.sqrt(2))) - erf((j - 0.5) / (sigma_bins * math.sqrt(2))))
        return convolve1d(binned, kernel / kernel.sum(), axis=-1, mode="constant")
