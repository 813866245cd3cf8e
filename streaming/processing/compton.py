"""Compton scattering kinematics, Compton profiles and the electron momentum factor (EMF).

- :func:`pz_from_energy`: electron momentum projection p_z (atomic units) of a photon
  scattered to energy E2, the XCS-CT paper's equation (2).
- :func:`energy_from_pz`: its inverse, in closed form.
- :func:`dpz_denergy`: the Jacobian dp_z/dE2 (a.u. per keV).
- :func:`cross_section_factor`: Klein-Nishina factor at the scattered energy, the slowly
  varying weight of J(p_z) in a spectrum.
- :func:`profile_from_spectrum`: J(p_z) per energy bin (its p_z edges and the integral of J
  over each bin).
- :func:`emf_weights`, :func:`emf`: EMF = E_L / E_H with E_L = ∫_{|pz|<1} J and
  E_H = ∫_{1<|pz|<5} J, by fractional-bin (cumulative) integration, with its Poisson
  uncertainty.

The spectrum model behind them (impulse approximation): counts per unit E2 are
``cross_section_factor(E2) * J(pz(E2)) * dpz/dE2``, so ``counts / cross_section_factor``
in a bin is the integral of J over the bin's p_z interval.

Energies in keV, angles in radians (``angle_deg`` only in :func:`emf`'s public signature,
which follows beamline habit), momenta in atomic units (mc = 137.036 a.u.).

References
----------
Suzuki et al. (2019), as equation (2) of the XCS-CT paper (J. Synchrotron Rad. 2024);
Klein & Nishina (1929).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MC2_KEV",
    "MC_AU",
    "cross_section_factor",
    "dpz_denergy",
    "emf",
    "emf_weights",
    "energy_from_pz",
    "profile_from_spectrum",
    "pz_from_energy",
]

MC2_KEV = 510.99895  # electron rest energy, keV (CODATA 2018)
MC_AU = 137.035999  # electron mc in atomic units of momentum (1/α)

_LOW_WINDOW_AU = 1.0
_HIGH_WINDOW_AU = 5.0


def pz_from_energy(e2_kev: np.ndarray, incident_kev: float, angle_rad: float) -> np.ndarray:
    """p_z (a.u.) of a photon of ``incident_kev`` scattered by ``angle_rad`` to ``e2_kev``.

    pz / mc = (E2 - E1 + E1 E2 (1 - cos θ) / mc²) / sqrt(E1² + E2² - 2 E1 E2 cos θ)
    """
    e2 = np.asarray(e2_kev, dtype=float)
    cos_theta = math.cos(angle_rad)
    numerator = e2 - incident_kev + incident_kev * e2 * (1 - cos_theta) / MC2_KEV
    denominator = np.sqrt(incident_kev**2 + e2**2 - 2 * incident_kev * e2 * cos_theta)
    return MC_AU * numerator / denominator


def energy_from_pz(pz_au: np.ndarray, incident_kev: float, angle_rad: float) -> np.ndarray:
    """Scattered energy (keV) at momentum projection ``pz_au``: equation (2) solved for E2.

    Squaring gives a quadratic in E2; the root kept is the one whose numerator has the sign
    of p_z.
    """
    r = np.asarray(pz_au, dtype=float) / MC_AU
    e1, cos_theta = incident_kev, math.cos(angle_rad)
    a_factor = 1 + e1 * (1 - cos_theta) / MC2_KEV
    qa = r**2 - a_factor**2
    qb = 2 * e1 * (a_factor - r**2 * cos_theta)
    qc = e1**2 * (r**2 - 1)
    discriminant = np.sqrt(np.maximum(qb**2 - 4 * qa * qc, 0.0))
    roots = np.stack([(-qb + discriminant) / (2 * qa), (-qb - discriminant) / (2 * qa)])
    sign_ok = np.sign(a_factor * roots - e1) == np.sign(r)
    at_zero = r == 0
    chosen = np.where(sign_ok[0] | at_zero, roots[0], roots[1])
    return np.where(at_zero, e1 / a_factor, chosen)


def dpz_denergy(e2_kev: np.ndarray, incident_kev: float, angle_rad: float) -> np.ndarray:
    """Jacobian dp_z/dE2 (a.u. per keV) of :func:`pz_from_energy`."""
    e2 = np.asarray(e2_kev, dtype=float)
    e1, cos_theta = incident_kev, math.cos(angle_rad)
    a_factor = 1 + e1 * (1 - cos_theta) / MC2_KEV
    numerator = a_factor * e2 - e1
    d_squared = e1**2 + e2**2 - 2 * e1 * e2 * cos_theta
    d = np.sqrt(d_squared)
    return MC_AU * (a_factor * d - numerator * (e2 - e1 * cos_theta) / d) / d_squared


def cross_section_factor(e2_kev: np.ndarray, incident_kev: float, angle_rad: float) -> np.ndarray:
    """Klein-Nishina factor (E2/E1)² (E1/E2 + E2/E1 - sin²θ), dimensionless."""
    ratio = np.asarray(e2_kev, dtype=float) / incident_kev
    return ratio**2 * (1 / ratio + ratio - math.sin(angle_rad) ** 2)


def profile_from_spectrum(
    counts: np.ndarray, energy_edges_kev: np.ndarray, incident_kev: float, angle_rad: float
) -> tuple[np.ndarray, np.ndarray]:
    """J(p_z) from a spectrum.

    Parameters
    ----------
    counts : ndarray, shape (..., n_bins)
        Counts per energy bin.
    energy_edges_kev : ndarray, shape (n_bins + 1,)
        Increasing bin edges, keV.

    Returns
    -------
    pz_edges_au : ndarray, shape (n_bins + 1,)
        p_z of each energy edge (increasing with energy).
    j_integral : ndarray, shape (..., n_bins)
        ∫ J dp_z over each bin: counts divided by the cross-section factor at the bin centre.
    """
    edges = np.asarray(energy_edges_kev, dtype=float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return pz_from_energy(edges, incident_kev, angle_rad), np.asarray(counts) / cross_section_factor(
        centres, incident_kev, angle_rad
    )


def _overlap(edges: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fraction of each bin [edges[i], edges[i+1]] inside [low, high]."""
    width = np.diff(edges)
    inside = np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0.0, None)
    return np.divide(inside, width, out=np.zeros_like(width), where=width > 0)


def emf_weights(
    energy_edges_kev: np.ndarray, incident_kev: float = 114.64, angle_rad: float = math.pi / 2
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin weights ``w_low``, ``w_high`` such that E_L = counts @ w_low, E_H = counts @ w_high.

    Each weight is the fraction of the bin's p_z interval inside the window (fractional
    bins: the |p_z| < 1 window is only 1.76 keV wide at 114.64 keV and 90°, so selecting
    whole bins by their centres would move the EMF by several per cent) divided by the
    cross-section factor at the bin centre.
    """
    edges = np.asarray(energy_edges_kev, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("energy_edges_kev must be a 1D increasing array of at least 2 edges")
    pz_edges = pz_from_energy(edges, incident_kev, angle_rad)
    centres = 0.5 * (edges[1:] + edges[:-1])
    inverse_factor = 1.0 / cross_section_factor(centres, incident_kev, angle_rad)
    low = _overlap(pz_edges, -_LOW_WINDOW_AU, _LOW_WINDOW_AU)
    high = _overlap(pz_edges, -_HIGH_WINDOW_AU, -_LOW_WINDOW_AU) + _overlap(pz_edges, _LOW_WINDOW_AU, _HIGH_WINDOW_AU)
    return low * inverse_factor, high * inverse_factor


def emf(
    counts: np.ndarray,
    energy_edges_keV: np.ndarray,  # noqa: N803  (the public signature asked for)
    incident_keV: float = 114.64,  # noqa: N803
    angle_deg: float = 90.0,
    *,
    return_sigma: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Electron momentum factor EMF = E_L / E_H of spectra.

    Parameters
    ----------
    counts : ndarray, shape (..., n_bins)
        Counts per energy bin (one spectrum per leading index: a pixel, a region).
    energy_edges_keV : ndarray, shape (n_bins + 1,)
        Increasing energy bin edges, keV.
    incident_keV : float
        Incident photon energy, keV.
    angle_deg : float
        Scattering angle, degrees.
    return_sigma : bool
        Also return the Poisson standard deviation of each EMF.

    Returns
    -------
    ndarray, shape (...)
        EMF (NaN where E_H is 0); with ``return_sigma``, ``(emf, sigma)``.
    """
    counts = np.asarray(counts, dtype=float)
    w_low, w_high = emf_weights(energy_edges_keV, incident_keV, math.radians(angle_deg))
    if counts.shape[-1] != w_low.size:
        raise ValueError(f"counts has {counts.shape[-1]} bins but energy_edges_keV describes {w_low.size}")
    e_low, e_high = counts @ w_low, counts @ w_high
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(e_high > 0, e_low / e_high, np.nan)
        if not return_sigma:
            return ratio
        # d(EMF)/d(count_i) = w_low_i / E_H - EMF w_high_i / E_H; Poisson: var(count_i) = count_i
        gradient_sq = (
            (w_low**2)[None] - 2 * ratio[..., None] * (w_low * w_high)[None] + ratio[..., None] ** 2 * (w_high**2)[None]
        )
        variance = (counts.reshape(-1, w_low.size) * gradient_sq.reshape(-1, w_low.size)).sum(axis=1)
        sigma = np.sqrt(variance.reshape(ratio.shape)) / np.where(e_high > 0, e_high, np.nan)
    return ratio, sigma
