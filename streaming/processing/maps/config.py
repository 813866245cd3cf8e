"""What the maps are made of: the validated configuration dataclasses.

- :class:`PeakWindow`: a 2θ window with side windows for a linear background.
- :class:`LatticePeak`: a reflection whose position gives a lattice parameter
  (``lattice = lattice_per_d · d``; NMC (003): c = 3 d).
- :class:`PhaseReference`: reference pattern(s) of one phase on their own 2θ axis.
- :class:`MapsConfig`: all of the above, what :func:`~.compute.compute_maps` makes.

Each checks itself when built and raises :class:`~streaming.errors.ConfigError` naming the
key (``maps.windows.<name>``, ``maps.lattice_peaks.<name>``, ``maps.phases.<name>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streaming.errors import ConfigError

__all__ = ["LatticePeak", "MapsConfig", "PeakWindow", "PhaseReference"]


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
