"""Per-voxel maps from an XRD-CT reconstruction: peak intensities, phases and lattices.

- :class:`PeakWindow`: a 2θ window with side windows for a linear background;
  :func:`window_intensity` gives each voxel's background-subtracted integrated intensity.
- :func:`fit_peak`: one pseudo-Voigt plus a linear background fitted in a window, for every
  voxel at once (Levenberg-Marquardt, batched 5 x 5 normal equations) → :class:`PeakFit`.
- :class:`PhaseReference` and :func:`decompose_phases`: non-negative least squares of every
  voxel pattern on reference patterns (a phase may have several components, e.g. the two
  ends of a lattice range, whose weights are summed) → :class:`PhaseDecomposition`.
- :class:`LatticePeak` and :func:`lattice_from_center`: peak position → d-spacing (Bragg, λ
  of the beam) → lattice parameter (``lattice = lattice_per_d · d``; NMC (003): c = 3 d).
- :class:`MapsConfig` and :func:`compute_maps`: all of the above, where a lattice peak is
  fitted after the fitted patterns of the *other* phases are subtracted (overlapping lines
  of a second phase, e.g. an inactive NMC with a fixed lattice, would bias the position).

Axes: a reconstruction is ``(n_y, n_x, n_radial)`` (one voxel's pattern contiguous, as
:mod:`.fbp` returns it); maps are ``(n_y, n_x)``. The radial axis is 2θ in degrees (the
unit of the integration), converted to radians only inside the Bragg relation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.optimize

from streaming.errors import ConfigError

__all__ = [
    "LatticePeak",
    "MapsConfig",
    "PeakFit",
    "PeakWindow",
    "PhaseDecomposition",
    "PhaseReference",
    "XrdctMaps",
    "compute_maps",
    "decompose_phases",
    "fit_peak",
    "lattice_from_center",
    "window_intensity",
]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _check_window(key: str, window: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: must be two numbers (degrees), got {window!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high):
        raise ConfigError(f"{key}: need finite 0 <= low < high, got {window!r}")
    return low, high


@dataclass(frozen=True, kw_only=True)
class PeakWindow:
    """A 2θ window and the side windows that fix its linear background.

    Attributes
    ----------
    name : str
    window_deg : (float, float)
        Peak window, 2θ degrees.
    background_width_deg : float
        Width of the side window just below and just above the peak window, degrees; the
        background is the straight line through their mean intensities. 0 for none.
    """

    name: str
    window_deg: tuple[float, float]
    background_width_deg: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_deg", _check_window(f"maps.windows.{self.name}", self.window_deg))
        if not (math.isfinite(self.background_width_deg) and self.background_width_deg >= 0):
            raise ConfigError(f"maps.windows.{self.name}: background_width_deg must be >= 0")


@dataclass(frozen=True, kw_only=True)
class LatticePeak:
    """A reflection whose position gives a lattice parameter.

    Attributes
    ----------
    name : str
        Name of the map (e.g. ``"NMC532_c"``).
    window_deg : (float, float)
        Fit window, 2θ degrees: wide enough for the peak's range of positions plus about a
        FWHM of background on each side.
    lattice_per_d : float
        Lattice parameter over d-spacing (``c = 3 d`` for (003) of R-3m; ``a = 2 d`` for (110)).
    phase : str or None
        The phase the reflection belongs to: the fitted patterns of every other phase are
        subtracted before the fit (:func:`compute_maps`); None to fit the raw patterns.
    eta : float
        Lorentzian share of the pseudo-Voigt, 0-1.
    fwhm_guess_deg : float
        Starting FWHM, degrees.
    min_area_fraction : float
        Voxels whose fitted peak area is below this fraction of the largest are left NaN.
    """

    name: str
    window_deg: tuple[float, float]
    lattice_per_d: float
    phase: str | None = None
    eta: float = 0.5
    fwhm_guess_deg: float = 0.1
    min_area_fraction: float = 0.1

    def __post_init__(self) -> None:
        key = f"maps.lattice_peaks.{self.name}"
        object.__setattr__(self, "window_deg", _check_window(key, self.window_deg))
        if not self.lattice_per_d > 0:
            raise ConfigError(f"{key}: lattice_per_d must be > 0, got {self.lattice_per_d!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"{key}: eta must be within [0, 1], got {self.eta!r}")
        if not self.fwhm_guess_deg > 0:
            raise ConfigError(f"{key}: fwhm_guess_deg must be > 0, got {self.fwhm_guess_deg!r}")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise ConfigError(f"{key}: min_area_fraction must be within [0, 1), got {self.min_area_fraction!r}")


@dataclass(frozen=True, eq=False)
class PhaseReference:
    """Reference pattern(s) of one phase on their own 2θ axis.

    Attributes
    ----------
    name : str
    radial_deg : ndarray of float, shape (n_points,)
        Increasing 2θ axis of the patterns, degrees.
    patterns : ndarray of float, shape (n_components, n_points) or (n_points,)
        Intensity per unit of the phase's weight. Several components (e.g. the two ends of a
        lattice range, which combine linearly into any lattice between while the shift is
        below the peak width) are fitted separately and their weights summed.
    """

    name: str
    radial_deg: np.ndarray
    patterns: np.ndarray

    def __post_init__(self) -> None:
        radial = np.asarray(self.radial_deg, dtype=np.float64)
        patterns = np.atleast_2d(np.asarray(self.patterns, dtype=np.float64))
        if radial.ndim != 1 or radial.size < 2 or np.any(np.diff(radial) <= 0):
            raise ConfigError(f"maps.phases.{self.name}: radial_deg must be 1D and increasing")
        if patterns.ndim != 2 or patterns.shape[1] != radial.size:
            raise ConfigError(
                f"maps.phases.{self.name}: patterns must be (n_components, {radial.size}), got {patterns.shape}"
            )
        if not np.all(np.isfinite(patterns)):
            raise ConfigError(f"maps.phases.{self.name}: patterns must be finite")
        object.__setattr__(self, "radial_deg", radial)
        object.__setattr__(self, "patterns", patterns)

    def on(self, radial_deg: np.ndarray) -> np.ndarray:
        """The components interpolated onto ``radial_deg`` (0 outside), (n_components, n)."""
        return np.stack([np.interp(radial_deg, self.radial_deg, p, left=0.0, right=0.0) for p in self.patterns])


@dataclass(frozen=True, kw_only=True)
class MapsConfig:
    """What :func:`compute_maps` makes.

    Attributes
    ----------
    windows : tuple of PeakWindow
    phases : tuple of PhaseReference
    lattice_peaks : tuple of LatticePeak
    phase_range_deg : (float, float) or None
        2θ range used by the phase decomposition; None for the whole axis.
    """

    windows: tuple[PeakWindow, ...] = ()
    phases: tuple[PhaseReference, ...] = ()
    lattice_peaks: tuple[LatticePeak, ...] = ()
    phase_range_deg: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for key in ("windows", "phases", "lattice_peaks"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"maps.phases: names must be unique, got {names}")
        for peak in self.lattice_peaks:
            if peak.phase is not None and peak.phase not in names:
                raise ConfigError(f"maps.lattice_peaks.{peak.name}: phase {peak.phase!r} is not among {names}")
        if self.phase_range_deg is not None:
            object.__setattr__(self, "phase_range_deg", _check_window("maps.phase_range_deg", self.phase_range_deg))


# -- intensities -----------------------------------------------------------------------------


def _voxels(reconstruction: np.ndarray, radial_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    volume = np.asarray(reconstruction)
    radial = np.asarray(radial_deg, dtype=np.float64)
    if volume.ndim != 3 or radial.shape != (volume.shape[2],):
        raise ValueError(f"reconstruction must be (n_y, n_x, n_radial) with n_radial = {radial.size}, "
                         f"got {volume.shape}")  # fmt: skip
    return volume.reshape(-1, volume.shape[2]), radial


def window_intensity(reconstruction: np.ndarray, radial_deg: np.ndarray, window: PeakWindow) -> np.ndarray:
    """Integrated intensity in a 2θ window above a linear background, per voxel.

    Parameters
    ----------
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
    radial_deg : ndarray of float, shape (n_radial,)
        Bin centres, 2θ degrees (uniform spacing).
    window : PeakWindow

    Returns
    -------
    ndarray of float32, shape (n_y, n_x)
        ``Σ (I - background) · Δ2θ`` over the bins whose centres lie in the window
        (intensity x degrees).
    """
    flat, radial = _voxels(reconstruction, radial_deg)
    low, high = window.window_deg
    inside = (radial >= low) & (radial <= high)
    if not inside.any():
        raise ValueError(f"window {window.name} {window.window_deg} holds no bin of the radial axis")
    step = float(np.median(np.diff(radial)))
    values = flat[:, inside].astype(np.float64)
    width = window.background_width_deg
    if width > 0:
        below = (radial >= low - width) & (radial < low)
        above = (radial > high) & (radial <= high + width)
        if not (below.any() and above.any()):
            raise ValueError(f"background windows of {window.name} hold no bin of the radial axis")
        x0, x1 = radial[below].mean(), radial[above].mean()
        y0, y1 = flat[:, below].mean(axis=1), flat[:, above].mean(axis=1)
        slope = (y1 - y0) / (x1 - x0)
        values = values - (y0[:, None] + slope[:, None] * (radial[inside] - x0))
    return (values.sum(axis=1) * step).reshape(reconstruction.shape[:2]).astype(np.float32)


# -- single-peak fit ---------------------------------------------------------------------------


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
    if valid.any():
        valid &= area >= min_area_fraction * area[valid].max()
    shape = reconstruction.shape[:2]
    return PeakFit(
        center_deg=np.where(valid, center, np.nan).reshape(shape),
        fwhm_deg=np.where(valid, params[:, 2], np.nan).reshape(shape),
        area=area.reshape(shape),
        background=(params[:, 3] + params[:, 4] * (center - x_origin)).reshape(shape),
        valid=valid.reshape(shape),
    )


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


# -- phases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseDecomposition:
    """Non-negative weights of every reference component in every voxel.

    Attributes
    ----------
    weights : dict of str to ndarray of float32, shape (n_y, n_x)
        Per phase: the sum of its components' weights (units of the references).
    component_weights : ndarray of float32, shape (n_y, n_x, n_components)
    components : list of str
        ``"<phase>[<k>]"`` for each column of ``component_weights``.
    relative_residual : ndarray of float32, shape (n_y, n_x)
        ``|pattern - fitted| / |pattern|`` over the fitted range.
    """

    weights: dict[str, np.ndarray]
    component_weights: np.ndarray
    components: list[str]
    relative_residual: np.ndarray
    _basis: np.ndarray = field(repr=False)
    _owner: np.ndarray = field(repr=False)

    @property
    def fitted(self) -> np.ndarray:
        """Each voxel's fitted pattern, (n_y, n_x, n_radial) float32 (made when asked: at the
        paper's size it is as large as the reconstruction)."""
        return np.einsum("yxk,kr->yxr", self.component_weights, self._basis).astype(np.float32)

    def fitted_without(self, phase: str) -> np.ndarray:
        """The fitted patterns of every phase but ``phase``, (n_y, n_x, n_radial)."""
        others = self._owner != phase
        return np.einsum("yxk,kr->yxr", self.component_weights[..., others], self._basis[others]).astype(np.float32)


def decompose_phases(
    reconstruction: np.ndarray,
    radial_deg: np.ndarray,
    phases: tuple[PhaseReference, ...] | list[PhaseReference],
    *,
    range_deg: tuple[float, float] | None = None,
) -> PhaseDecomposition:
    """Each voxel pattern as a non-negative combination of the phases' reference patterns.

    Exact NNLS per voxel, made cheap by working on the ``k x k`` normal equations
    (k = components, a few dozen at most) instead of the ``n_radial``-long patterns:
    ``|R w - p|² = |Lᵀ w - L⁻¹ R p|² + const`` with ``R Rᵀ = L Lᵀ`` (Cholesky). All voxels are
    first solved unconstrained in one batched call; only those with a negative weight go
    through Lawson-Hanson (``scipy.optimize.nnls``) on their k x k system.

    Parameters
    ----------
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
    radial_deg : ndarray of float, shape (n_radial,)
    phases : sequence of PhaseReference
    range_deg : (float, float) or None
        2θ range fitted; None for the whole axis.

    Returns
    -------
    PhaseDecomposition
    """
    flat, radial = _voxels(reconstruction, radial_deg)
    if not phases:
        raise ValueError("need at least one phase reference")
    blocks = [phase.on(radial) for phase in phases]
    basis = np.concatenate(blocks)  # (k, n_radial)
    owner = np.array([phase.name for phase, block in zip(phases, blocks, strict=True) for _ in block])
    components = [f"{phase.name}[{i}]" for phase, block in zip(phases, blocks, strict=True) for i in range(len(block))]
    used = np.ones(radial.size, bool) if range_deg is None else (radial >= range_deg[0]) & (radial <= range_deg[1])
    design = basis[:, used]
    scale = np.linalg.norm(design, axis=1)
    if np.any(scale == 0):
        empty = [c for c, s in zip(components, scale, strict=True) if s == 0]
        raise ValueError(f"reference components {empty} are zero over the fitted range")
    design = design / scale[:, None]  # unit rows: the normal matrix is a correlation matrix
    gram = design @ design.T
    # a whisker of ridge keeps near-collinear components (two ends of a lattice) factorisable
    gram += 1e-10 * np.eye(gram.shape[0])
    cholesky = np.linalg.cholesky(gram)
    weights = np.empty((flat.shape[0], basis.shape[0]), dtype=np.float64)
    residual = np.empty(flat.shape[0], dtype=np.float64)
    # voxels in blocks: float64 copies of every pattern at once took ~15 GB at the paper's
    # size (301 401 voxels x 2000 bins), more than the machine's 24 GB with the volume
    for block in _voxel_blocks(flat.shape[0], used.sum()):
        patterns = flat[block][:, used].astype(np.float64)
        projections = patterns @ design.T  # (n_block, k)
        block_weights = np.linalg.solve(gram, projections.T).T
        negative = np.flatnonzero(np.any(block_weights < 0, axis=1))
        if negative.size:
            targets = scipy.linalg.solve_triangular(cholesky, projections[negative].T, lower=True)
            upper = cholesky.T
            for row, target in zip(negative, targets.T, strict=True):
                block_weights[row] = scipy.optimize.nnls(upper, target)[0]
        block_weights /= scale  # back to the units of the references
        norm = np.linalg.norm(patterns, axis=1)
        residual[block] = np.linalg.norm(patterns - block_weights @ basis[:, used], axis=1) / np.where(
            norm > 0, norm, 1.0
        )
        weights[block] = block_weights
    shape = reconstruction.shape[:2]
    per_phase = {phase.name: weights[:, owner == phase.name].sum(axis=1).reshape(shape).astype(np.float32)
                 for phase in phases}  # fmt: skip
    return PhaseDecomposition(
        weights=per_phase,
        component_weights=weights.reshape(*shape, -1).astype(np.float32),
        components=components,
        relative_residual=residual.reshape(shape).astype(np.float32),
        _basis=basis,
        _owner=owner,
    )


def _voxel_blocks(n_voxels: int, n_values: int, block_bytes: int = 64 << 20) -> list[slice]:
    """Slices of voxels whose float64 patterns take about ``block_bytes``."""
    step = max(1, block_bytes // (8 * max(1, int(n_values))))
    return [slice(start, min(n_voxels, start + step)) for start in range(0, n_voxels, step)]


# -- everything ------------------------------------------------------------------------------


@dataclass(frozen=True)
class XrdctMaps:
    """The maps of one reconstruction, each (n_y, n_x).

    Attributes
    ----------
    intensities : dict of str to ndarray
        :func:`window_intensity` per :class:`PeakWindow`.
    phases : PhaseDecomposition or None
    lattices : dict of str to ndarray
        Lattice parameter per :class:`LatticePeak`, Å (NaN where the fit is invalid).
    peak_fits : dict of str to PeakFit
    """

    intensities: dict[str, np.ndarray]
    phases: PhaseDecomposition | None
    lattices: dict[str, np.ndarray]
    peak_fits: dict[str, PeakFit]


def compute_maps(
    reconstruction: np.ndarray, radial_deg: np.ndarray, config: MapsConfig, *, wavelength_angstrom: float
) -> XrdctMaps:
    """Every map :class:`MapsConfig` asks for.

    Parameters
    ----------
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
        Not modified.
    radial_deg : ndarray of float, shape (n_radial,)
    config : MapsConfig
    wavelength_angstrom : float
        Beam wavelength (the geometry's), Å.

    Returns
    -------
    XrdctMaps
    """
    if not wavelength_angstrom > 0:
        raise ValueError(f"wavelength_angstrom must be > 0, got {wavelength_angstrom!r}")
    intensities = {w.name: window_intensity(reconstruction, radial_deg, w) for w in config.windows}
    phases = None
    if config.phases:
        phases = decompose_phases(reconstruction, radial_deg, config.phases, range_deg=config.phase_range_deg)
    lattices, fits = {}, {}
    for peak in config.lattice_peaks:
        volume = reconstruction
        if phases is not None and peak.phase is not None:
            volume = reconstruction - phases.fitted_without(peak.phase)
        fit = fit_peak(volume, radial_deg, peak.window_deg, eta=peak.eta, fwhm_guess_deg=peak.fwhm_guess_deg,
                       min_area_fraction=peak.min_area_fraction)  # fmt: skip
        fits[peak.name] = fit
        lattices[peak.name] = lattice_from_center(fit.center_deg, wavelength_angstrom, peak.lattice_per_d).astype(
            np.float32
        )
    return XrdctMaps(intensities=intensities, phases=phases, lattices=lattices, peak_fits=fits)
