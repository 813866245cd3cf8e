"""Powder diffraction of crystalline phases from their structures.

- :class:`Site`: atoms of one kind (or a mixed site) at fractional positions.
- :class:`Phase`: lattice parameters and sites of a whole unit cell (all positions, centring
  included), so systematic absences come out of the structure factor by themselves.
- :func:`reflections`: every reflection up to a maximum 2θ: d-spacing, 2θ and the powder
  intensity (structure factor with xraylib atomic form factors and a Debye-Waller factor,
  summed over all equivalent hkl, i.e. including multiplicity; Lorentz factor; 1/V²).
- :func:`pseudo_voigt`: unit-area pseudo-Voigt profile.
- :func:`powder_pattern`: the 1D pattern of a phase on a 2θ axis.

Units: lengths in Å (crystallographic habit), angles in degrees at this boundary (2θ axes
are what detectors and pyFAI report in ``2th_deg``), energies in keV.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import xraylib

__all__ = [
    "HC_KEV_ANGSTROM",
    "Phase",
    "Reflections",
    "Site",
    "powder_pattern",
    "pseudo_voigt",
    "reflections",
    "wavelength_angstrom",
]

HC_KEV_ANGSTROM = 12.398419843320026  # h c in keV Å (CODATA 2018)


def wavelength_angstrom(energy_kev: float) -> float:
    """X-ray wavelength in Å for a photon energy in keV."""
    return HC_KEV_ANGSTROM / energy_kev


@dataclass(frozen=True)
class Site:
    """Atoms at fractional positions; ``elements`` maps atomic number to occupancy."""

    elements: dict[int, float]
    positions: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True, kw_only=True)
class Phase:
    """A crystalline phase.

    Attributes
    ----------
    name : str
    a_angstrom, b_angstrom, c_angstrom : float
        Lattice lengths, Å.
    alpha_deg, beta_deg, gamma_deg : float
        Lattice angles, degrees.
    sites : tuple of Site
        Every atom of the unit cell (centring translations applied).
    b_iso_angstrom2 : float
        Isotropic Debye-Waller B factor, Å².
    fwhm_scale : float
        Peak width relative to the instrument's (1 for well-crystallised phases).
    """

    name: str
    a_angstrom: float
    b_angstrom: float
    c_angstrom: float
    alpha_deg: float = 90.0
    beta_deg: float = 90.0
    gamma_deg: float = 90.0
    sites: tuple[Site, ...] = ()
    b_iso_angstrom2: float = 0.5
    fwhm_scale: float = 1.0

    def metric(self) -> np.ndarray:
        """Direct metric tensor G (Å²): d-spacings follow from its inverse."""
        a, b, c = self.a_angstrom, self.b_angstrom, self.c_angstrom
        al, be, ga = (math.radians(x) for x in (self.alpha_deg, self.beta_deg, self.gamma_deg))
        return np.array(
            [
                [a * a, a * b * math.cos(ga), a * c * math.cos(be)],
                [a * b * math.cos(ga), b * b, b * c * math.cos(al)],
                [a * c * math.cos(be), b * c * math.cos(al), c * c],
            ]
        )

    @property
    def volume_angstrom3(self) -> float:
        return float(math.sqrt(np.linalg.det(self.metric())))

    def d_spacing_angstrom(self, hkl: np.ndarray) -> np.ndarray:
        """d-spacings (Å) of reflections ``hkl`` of shape (n, 3)."""
        reciprocal = np.linalg.inv(self.metric())
        hkl = np.asarray(hkl, float)
        return 1.0 / np.sqrt(np.einsum("ni,ij,nj->n", hkl, reciprocal, hkl))


@dataclass(frozen=True)
class Reflections:
    """Distinct reflections of a phase, strongest summed over equivalent hkl.

    ``hkl`` holds one representative (the largest h, k, l in lexical order) per d-spacing.
    ``intensity`` is per unit volume of phase, arbitrary but common units across phases.
    """

    hkl: np.ndarray
    d_angstrom: np.ndarray
    two_theta_deg: np.ndarray
    intensity: np.ndarray


def _form_factor(elements: dict[int, float], s_inv_angstrom: np.ndarray) -> np.ndarray:
    # xraylib's FF_Rayl takes the momentum transfer sin(θ)/λ = 1/(2d), in 1/Å
    return sum(
        occupancy * np.array([xraylib.FF_Rayl(z, float(s)) for s in s_inv_angstrom])
        for z, occupancy in elements.items()
    )


def reflections(
    phase: Phase, wavelength_angstrom: float, two_theta_max_deg: float, *, min_relative: float = 1e-5
) -> Reflections:
    """Reflections of ``phase`` up to ``two_theta_max_deg`` for a wavelength in Å.

    Intensity per unit volume of phase: ``Σ|F|² exp(-2B s²) L / V²`` with s = 1/(2d), the
    sum over all hkl sharing a d-spacing (multiplicity), L = 1/(sin θ sin 2θ) the powder
    Lorentz factor. Polarisation is left to the 2D detector geometry.
    """
    d_min = wavelength_angstrom / (2 * math.sin(math.radians(two_theta_max_deg) / 2))
    lengths = np.array([phase.a_angstrom, phase.b_angstrom, phase.c_angstrom])
    limits = np.ceil(lengths / d_min).astype(int) + 1
    grid = np.array(list(itertools.product(*(range(-n, n + 1) for n in limits))))
    grid = grid[np.any(grid != 0, axis=1)]
    d = phase.d_spacing_angstrom(grid)
    keep = d >= d_min
    grid, d = grid[keep], d[keep]
    s = 1.0 / (2 * d)
    # structure factor over all atoms; form factors evaluated once per distinct d
    d_key = np.round(d, 6)
    unique_d, inverse = np.unique(d_key, return_inverse=True)
    unique_s = 1.0 / (2 * unique_d)
    amplitude = np.zeros(len(grid), complex)
    for site in phase.sites:
        f = _form_factor(site.elements, unique_s)[inverse]
        positions = np.asarray(site.positions, float)
        amplitude += f * np.exp(2j * np.pi * grid @ positions.T).sum(axis=1)
    if grid.size == 0:
        return Reflections(np.zeros((0, 3), int), np.zeros(0), np.zeros(0), np.zeros(0))
    f_squared = np.abs(amplitude) ** 2 * np.exp(-2 * phase.b_iso_angstrom2 * s**2)
    summed = np.bincount(inverse, weights=f_squared)
    theta = np.arcsin(wavelength_angstrom / (2 * unique_d))
    intensity = summed / (np.sin(theta) * np.sin(2 * theta)) / phase.volume_angstrom3**2
    present = intensity > min_relative * intensity.max()
    representative = np.array(
        [grid[inverse == i][np.lexsort(grid[inverse == i].T[::-1])][-1] for i in np.flatnonzero(present)]
    )
    order = np.argsort(-unique_d[present])
    return Reflections(
        hkl=representative[order].reshape(-1, 3),
        d_angstrom=unique_d[present][order],
        two_theta_deg=np.degrees(2 * theta[present][order]),
        intensity=intensity[present][order],
    )


def pseudo_voigt(x: np.ndarray, center: float, fwhm: float, eta: float) -> np.ndarray:
    """Unit-area pseudo-Voigt: ``eta`` Lorentzian + ``1 - eta`` Gaussian of one FWHM."""
    gamma = fwhm / 2
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    lorentz = gamma / (math.pi * ((x - center) ** 2 + gamma**2))
    gauss = np.exp(-0.5 * ((x - center) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return eta * lorentz + (1 - eta) * gauss


def powder_pattern(
    phase: Phase, two_theta_deg: np.ndarray, wavelength_angstrom: float, *, fwhm_deg: float, eta: float = 0.5
) -> np.ndarray:
    """Intensity of ``phase`` on the 2θ axis (degrees): its reflections as pseudo-Voigts
    of the instrumental width ``fwhm_deg`` times the phase's ``fwhm_scale``."""
    refl = reflections(phase, wavelength_angstrom, float(two_theta_deg.max()) + 5 * fwhm_deg)
    pattern = np.zeros_like(two_theta_deg, dtype=float)
    width = fwhm_deg * phase.fwhm_scale
    for center, intensity in zip(refl.two_theta_deg, refl.intensity, strict=True):
        pattern += intensity * pseudo_voigt(two_theta_deg, center, width, eta)
    return pattern
