"""Single-peak fits and the lattice parameters they give.

- :func:`fit_peak`: one pseudo-Voigt plus a linear background fitted in a window, for every
  voxel at once (Levenberg-Marquardt, batched 5 x 5 normal equations) → :class:`PeakFit`.
- :func:`lattice_from_center`: peak position → d-spacing (Bragg, λ of the beam) → lattice
  parameter (``lattice = lattice_per_d · d``; NMC (003): c = 3 d).
- :func:`join_peak_fits`: the fits of blocks of image rows (fitted apart, e.g. on Dask
  workers) as one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import _check_window
from .voxels import _voxels

__all__ = ["PeakFit", "fit_peak", "join_peak_fits", "lattice_from_center"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class PeakFit:
    """A pseudo-Voigt + linear background fitted in every voxel; maps are (n_y, n_x).

    ``center_deg`` and ``fwhm_deg`` are NaN where the fit is not trusted (``valid`` False):
    no positive peak, a centre within half a FWHM of the window's ends, or an area below
    the threshold.
    """

    center_deg: np.ndarray
    fwhm_deg: np.ndarray
    area: np.ndarray
    background: np.ndarray
    valid: np.ndarray

    def thresholded(self, min_area_fraction: float) -> PeakFit:
        """The fit with areas below ``min_area_fraction`` of the largest valid area made
        invalid (NaN centre and FWHM): a threshold over the whole image, so applied once the
        fits of every block of voxels are joined (:func:`join_peak_fits`)."""
        valid = self.valid.copy()
        if valid.any():
            valid &= self.area >= min_area_fraction * self.area[valid].max()
        return PeakFit(center_deg=np.where(valid, self.center_deg, np.nan),
                       fwhm_deg=np.where(valid, self.fwhm_deg, np.nan), area=self.area, background=self.background,
                       valid=valid)  # fmt: skip


def join_peak_fits(parts: list[PeakFit]) -> PeakFit:
    """The fits of consecutive blocks of image rows as one (stacked along y)."""
    return PeakFit(*(np.concatenate([getattr(part, name) for part in parts]) for name in
                     ("center_deg", "fwhm_deg", "area", "background", "valid")))  # fmt: skip


def _pseudo_voigt(u: np.ndarray, fwhm: np.ndarray, eta: float) -> tuple[np.ndarray, ...]:
    """Unit-area pseudo-Voigt of ``u = x - centre`` and its derivatives by centre and FWHM."""
    gamma = 0.5 * fwhm
    sigma = fwhm / _FWHM_PER_SIGMA
    denominator = u**2 + gamma**2
    lorentz = gamma / (np.pi * denominator)
    gauss = np.exp(-0.5 * (u / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    d_lorentz_d_center = 2 * gamma * u / (np.pi * denominator**2)
    d_gauss_d_center = gauss * u / sigma**2
    d_lorentz_d_fwhm = 0.5 * (u**2 - gamma**2) / (np.pi * denominator**2)
    d_gauss_d_fwhm = gauss * (u**2 / sigma**3 - 1 / sigma) / _FWHM_PER_SIGMA
    profile = eta * lorentz + (1 - eta) * gauss
    return (
        profile,
        eta * d_lorentz_d_center + (1 - eta) * d_gauss_d_center,
        eta * d_lorentz_d_fwhm + (1 - eta) * d_gauss_d_fwhm,
    )


def _model(params: np.ndarray, x: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """Model (n, m) and Jacobian (n, m, 5) for params (area, centre, fwhm, b0, b1)."""
    area, center, fwhm, b0, b1 = (params[:, k : k + 1] for k in range(5))
    profile, d_center, d_fwhm = _pseudo_voigt(x[None, :] - center, fwhm, eta)
    model = area * profile + b0 + b1 * x[None, :]
    jacobian = np.stack(
        [profile, area * d_center, area * d_fwhm, np.ones_like(profile), np.broadcast_to(x, profile.shape)], axis=-1
    )
    return model, jacobian


def fit_peak(
    reconstruction: np.ndarray,
    radial_deg: np.ndarray,
    window_deg: tuple[float, float],
    *,
    eta: float = 0.5,
    fwhm_guess_deg: float = 0.1,
    min_area_fraction: float = 0.1,
    n_iterations: int = 30,
) -> PeakFit:
    """Fit one pseudo-Voigt plus a straight line in a 2θ window, every voxel at once.

    Start: the window's maximum above the line through its end points, refined by a
    parabola through the three bins around it. Then Levenberg-Marquardt steps on
    (area, centre, FWHM, b0, b1), solving every voxel's 5 x 5 damped normal equations in one
    batched call; a voxel's damping grows when a step does not lower its residual.

    Parameters
    ----------
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
    radial_deg : ndarray of float, shape (n_radial,)
        Bin centres, 2θ degrees.
    window_deg : (float, float)
    eta : float
        Lorentzian share of the profile (fixed).
    fwhm_guess_deg : float
    min_area_fraction : float
        Fits with an area below this fraction of the largest fitted area are invalid.
    n_iterations : int

    Returns
    -------
    PeakFit
    """
    flat, radial = _voxels(reconstruction, radial_deg)
    low, high = _check_window("fit_peak.window_deg", window_deg)
    inside = np.flatnonzero((radial >= low) & (radial <= high))
    if inside.size < 7:
        raise ValueError(f"window {window_deg} holds {inside.size} bins; a peak fit needs >= 7")
    # centred x keeps the 5 x 5 systems well conditioned
    x_origin = float(radial[inside].mean())
    x = radial[inside] - x_origin
    y = flat[:, inside].astype(np.float64)
    n = y.shape[0]
    line = y[:, :1] + (y[:, -1:] - y[:, :1]) * (x - x[0]) / (x[-1] - x[0])
    above = y - line
    peak = np.clip(np.argmax(above, axis=1), 1, x.size - 2)
    rows = np.arange(n)
    left, middle, right = above[rows, peak - 1], above[rows, peak], above[rows, peak + 1]
    curvature = left - 2 * middle + right
    shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    step = float(x[1] - x[0])
    params = np.empty((n, 5))
    params[:, 1] = x[peak] + np.clip(shift, -0.5, 0.5) * step
    params[:, 2] = fwhm_guess_deg
    height = np.maximum(middle, 0.0)
    profile_peak, _, _ = _pseudo_voigt(np.zeros(1), np.array([fwhm_guess_deg]), eta)
    params[:, 0] = height / profile_peak[0]
    params[:, 4] = (y[:, -1] - y[:, 0]) / (x[-1] - x[0])
    params[:, 3] = y[:, 0] - params[:, 4] * x[0]
    damping = np.full(n, 1e-3)
    model, jacobian = _model(params, x, eta)
    cost = ((y - model) ** 2).sum(axis=1)
    min_fwhm, max_fwhm = 0.25 * step, float(x[-1] - x[0])
    for _ in range(n_iterations):
        residual = y - model
        normal = np.einsum("nmi,nmj->nij", jacobian, jacobian)
        gradient = np.einsum("nmi,nm->ni", jacobian, residual)
        diagonal = np.einsum("nii->ni", normal)
        damped = normal + damping[:, None, None] * (diagonal[:, :, None] * np.eye(5) + 1e-12 * np.eye(5))
        try:
            delta = np.linalg.solve(damped, gradient[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a singular voxel (all zeros): solve one by one
            delta = np.stack([np.linalg.lstsq(a, g, rcond=None)[0] for a, g in zip(damped, gradient, strict=True)])
        trial = params + delta
        trial[:, 1] = np.clip(trial[:, 1], x[0], x[-1])
        trial[:, 2] = np.clip(trial[:, 2], min_fwhm, max_fwhm)
        trial_model, trial_jacobian = _model(trial, x, eta)
        trial_cost = ((y - trial_model) ** 2).sum(axis=1)
        better = trial_cost < cost
        params[better], model[better], jacobian[better], cost[better] = (
            trial[better], trial_model[better], trial_jacobian[better], trial_cost[better]
        )  # fmt: skip
        damping = np.where(better, damping / 3, damping * 4)
    area = params[:, 0]
    center = params[:, 1] + x_origin
    # a centre within half a FWHM of the window's ends is a background slope, not a peak (the
    # steel casing's, in the demo: "c" of 13.2 Å at the window's edge)
    half_width = 0.5 * params[:, 2]
    valid = (
        (area > 0)
        & (params[:, 1] - x[0] >= half_width)
        & (x[-1] - params[:, 1] >= half_width)
        & np.all(np.isfinite(params), axis=1)
    )
    shape = reconstruction.shape[:2]
    fit = PeakFit(
        center_deg=np.where(valid, center, np.nan).reshape(shape),
        fwhm_deg=np.where(valid, params[:, 2], np.nan).reshape(shape),
        area=area.reshape(shape),
        background=(params[:, 3] + params[:, 4] * (center - x_origin)).reshape(shape),
        valid=valid.reshape(shape),
    )
    return fit.thresholded(min_area_fraction)


def lattice_from_center(center_deg: np.ndarray, wavelength_angstrom: float, lattice_per_d: float) -> np.ndarray:
    """Lattice parameter from a peak position: Bragg's ``d = λ / (2 sin θ)`` times ``lattice_per_d``.

    Parameters
    ----------
    center_deg : ndarray of float
        Peak position, 2θ degrees.
    wavelength_angstrom : float
    lattice_per_d : float

    Returns
    -------
    ndarray of float, the shape of ``center_deg``, Å
    """
    theta_rad = np.radians(np.asarray(center_deg, dtype=np.float64)) / 2
    return lattice_per_d * wavelength_angstrom / (2 * np.sin(theta_rad))
