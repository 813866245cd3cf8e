"""HEXITEC event chain: raw uint16 frames in, per-pixel energy spectra out.

- :class:`HexitecConfig`: threshold (keV or ADU), charge-sharing rule, energy binning.
- :class:`HexitecCalibration`: per-pixel gradient, intercept and pedestal;
  :func:`pedestal_from_darks` and :func:`read_calibration_files` build it.
- :class:`EventCounters`: frames, hit pixels, events kept single / merged / dropped.
- :func:`process_frames`: the chain on one batch of frames, histogrammed into a cube.
- :class:`SpectrumAccumulator`: the streaming state (cube and counters) for a consumer:
  ``add(frames)`` per batch, ``spectra`` when publishing, ``reset()`` between acquisitions.

The chain, per frame: a pixel is hit when its calibrated energy
``E = gradient · (ADC - pedestal) + intercept`` exceeds the threshold (``threshold_kev``) or
when ``ADC - pedestal`` exceeds ``threshold_adu``; hit pixels that touch (4-connectivity)
form one event. Charge sharing (the XCS-CT paper, section 2.3): single-pixel events are kept;
events of 2 .. ``max_event_pixels`` pixels are summed into their highest-energy pixel
(``"sum"``); larger events are dropped. ``"discard"`` drops every multi-pixel event and
``"off"`` histograms every hit pixel on its own (no clustering, for diagnostics).

The hot loop is one numba kernel (:func:`_kernel_events`) that scans each frame against a
per-pixel integer ADU threshold computed once, labels the few hits by a breadth-first search
over their 4-neighbours, and histograms each event directly into the cube: at 1 % occupancy
(≈ 64 photons in 6400 pixels) a frame costs little more than reading it.

Energies in keV, ADC values in ADU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numba
import numpy as np

from streaming.errors import ConfigError

__all__ = [
    "CHARGE_SHARING_MODES",
    "HEXITEC_ENERGY_EDGES_KEV",
    "HEXITEC_SHAPE",
    "EventCounters",
    "HexitecCalibration",
    "HexitecConfig",
    "SpectrumAccumulator",
    "pedestal_from_darks",
    "process_frames",
    "read_calibration_files",
]

HEXITEC_SHAPE = (80, 80)
#: The HEXITEC's spectra: 0-200 keV in 1000 bins of 0.2 keV (the XCS-CT paper)
HEXITEC_ENERGY_EDGES_KEV = np.linspace(0.0, 200.0, 1001)
CHARGE_SHARING_MODES = ("sum", "discard", "off")
_CUBE_DTYPES = (np.dtype(np.uint32), np.dtype(np.int64))
_NEVER_HIT_ADU = 65536  # above every uint16 value
_MODE_OFF = 0


@dataclass(frozen=True, kw_only=True)
class HexitecConfig:
    """Settings of the event chain; checked when built.

    Attributes
    ----------
    threshold_kev : float or None
        A pixel is hit when its calibrated energy exceeds this, keV. Set it to None to
        threshold in ADU instead.
    threshold_adu : float or None
        A pixel is hit when ``ADC - pedestal`` exceeds this, ADU (only with
        ``threshold_kev=None``).
    charge_sharing : {"sum", "discard", "off"}
        ``"sum"``: events of up to ``max_event_pixels`` pixels are summed into their
        highest-energy pixel, larger ones dropped; ``"discard"``: only single-pixel events
        are kept; ``"off"``: every hit pixel is counted on its own.
    max_event_pixels : int
        Largest event kept by ``"sum"`` (2 in the XCS-CT paper).
    energy_min_kev, energy_max_kev : float
        Range of the spectra, keV.
    n_bins : int
        Equal-width energy bins over the range.
    """

    threshold_kev: float | None = 3.0
    threshold_adu: float | None = None
    charge_sharing: str = "sum"
    max_event_pixels: int = 2
    energy_min_kev: float = 0.0
    energy_max_kev: float = 200.0
    n_bins: int = 1000

    def __post_init__(self) -> None:
        if (self.threshold_kev is None) == (self.threshold_adu is None):
            raise ConfigError("hexitec.threshold_kev: give exactly one of threshold_kev and threshold_adu")
        for key in ("threshold_kev", "threshold_adu"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"hexitec.{key}: must be a finite number >= 0, got {value!r}")
        if self.charge_sharing not in CHARGE_SHARING_MODES:
            raise ConfigError(
                f"hexitec.charge_sharing: must be one of {', '.join(CHARGE_SHARING_MODES)}, got {self.charge_sharing!r}"
            )
        if not isinstance(self.max_event_pixels, int) or isinstance(self.max_event_pixels, bool):
            raise ConfigError(f"hexitec.max_event_pixels: must be an int, got {self.max_event_pixels!r}")
        if self.max_event_pixels < 1:
            raise ConfigError(f"hexitec.max_event_pixels: must be >= 1, got {self.max_event_pixels}")
        if not isinstance(self.n_bins, int) or isinstance(self.n_bins, bool) or self.n_bins < 1:
            raise ConfigError(f"hexitec.n_bins: must be an int >= 1, got {self.n_bins!r}")
        for key in ("energy_min_kev", "energy_max_kev"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ConfigError(f"hexitec.{key}: must be a finite number, got {value!r}")
        if self.energy_max_kev <= self.energy_min_kev:
            raise ConfigError(
                f"hexitec.energy_max_kev: must exceed energy_min_kev={self.energy_min_kev}, got {self.energy_max_kev}"
            )

    @property
    def energy_edges_kev(self) -> np.ndarray:
        """Bin edges of the spectra, keV, shape (n_bins + 1,)."""
        return np.linspace(self.energy_min_kev, self.energy_max_kev, self.n_bins + 1)


def _frozen_float_array(name: str, value: np.ndarray) -> np.ndarray:
    array = np.array(value, dtype=np.float64, copy=True)  # a private copy: callers keep theirs
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2D per-pixel array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds non-finite values")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class HexitecCalibration:
    """Per-pixel calibration: ``E = gradient · (ADC - pedestal) + intercept`` for a hit.

    Parameters
    ----------
    gradient_kev_per_adu : ndarray of float, shape (n_rows, n_cols)
        Gain, keV per ADU (> 0).
    intercept_kev : ndarray of float, shape (n_rows, n_cols)
        Energy offset of a hit, keV.
    pedestal_adu : ndarray of float, shape (n_rows, n_cols)
        Dark level, ADU (see :func:`pedestal_from_darks`).

    The arrays are copied to read-only float64.
    """

    gradient_kev_per_adu: np.ndarray
    intercept_kev: np.ndarray
    pedestal_adu: np.ndarray

    def __post_init__(self) -> None:
        for item in fields(self):
            object.__setattr__(self, item.name, _frozen_float_array(item.name, getattr(self, item.name)))
        shapes = {self.gradient_kev_per_adu.shape, self.intercept_kev.shape, self.pedestal_adu.shape}
        if len(shapes) != 1:
            raise ValueError(f"gradient, intercept and pedestal must share one shape, got {sorted(shapes)}")
        if np.any(self.gradient_kev_per_adu <= 0):
            raise ValueError("gradient_kev_per_adu must be > 0 in every pixel")

    @property
    def shape(self) -> tuple[int, int]:
        """Detector shape (n_rows, n_cols)."""
        return self.gradient_kev_per_adu.shape

    @classmethod
    def from_files(
        cls, gradients_path: str | Path, intercepts_path: str | Path, dark_frames: np.ndarray
    ) -> HexitecCalibration:
        """Calibration from HEXITEC gradient/intercept text files and dark frames."""
        gradient, intercept = read_calibration_files(gradients_path, intercepts_path)
        return cls(gradient, intercept, pedestal_from_darks(dark_frames))

    def energy_kev(self, frames: np.ndarray) -> np.ndarray:
        """Calibrated energy of every pixel of ``frames`` (float64, same shape), keV."""
        frames = _check_frames(frames, self.shape)
        return self.gradient_kev_per_adu * (frames - self.pedestal_adu) + self.intercept_kev


def read_calibration_files(gradients_path: str | Path, intercepts_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read per-pixel ``gradients.txt`` (keV/ADU) and ``intercepts.txt`` (keV) matrices.

    These are whitespace-separated text matrices, one detector row per line, as HEXITEC
    calibrations are distributed (and as ``simulators.hexitec.HexitecSimulator.write_calibration``
    writes them). Read once at set-up, never per frame.

    Returns
    -------
    gradient_kev_per_adu, intercept_kev : ndarray of float64, shape (n_rows, n_cols)
    """
    gradient = np.loadtxt(gradients_path, dtype=np.float64, ndmin=2)
    intercept = np.loadtxt(intercepts_path, dtype=np.float64, ndmin=2)
    if gradient.shape != intercept.shape:
        raise ValueError(
            f"{gradients_path} has shape {gradient.shape} but {intercepts_path} has shape {intercept.shape}"
        )
    return gradient, intercept


def pedestal_from_darks(dark_frames: np.ndarray, *, clip_sigma: float = 5.0) -> np.ndarray:
    """Per-pixel pedestal (ADU) from frames taken with the beam off.

    The mean of each pixel over the frames, leaving out values more than ``clip_sigma``
    robust standard deviations (1.4826 × MAD, at least 1 ADU) from the pixel's median, so a
    stray photon in a dark frame does not lift the pedestal.

    Parameters
    ----------
    dark_frames : ndarray of uint16, shape (n_frames, n_rows, n_cols)
    clip_sigma : float

    Returns
    -------
    ndarray of float64, shape (n_rows, n_cols)
    """
    darks = np.asarray(dark_frames)
    if darks.ndim != 3 or darks.shape[0] < 1:
        raise ValueError(f"dark_frames must have shape (n_frames, n_rows, n_cols), got {darks.shape}")
    if clip_sigma <= 0:
        raise ValueError(f"clip_sigma must be > 0, got {clip_sigma}")
    values = darks.astype(np.float64)
    median = np.median(values, axis=0)
    sigma = np.maximum(1.4826 * np.median(np.abs(values - median), axis=0), 1.0)
    inside = np.abs(values - median) <= clip_sigma * sigma
    return (values * inside).sum(axis=0) / np.maximum(inside.sum(axis=0), 1)


@dataclass
class EventCounters:
    """What the chain saw, summed over the frames processed.

    Attributes
    ----------
    frames : int
    hit_pixels : int
        Pixels over threshold.
    single : int
        Single-pixel events kept (every hit pixel with ``charge_sharing="off"``).
    merged : int
        Multi-pixel events summed into one (``"sum"``).
    dropped : int
        Events over more pixels than allowed.
    out_of_range : int
        Kept events (single or merged) whose energy fell outside the spectra's range.
    """

    frames: int = 0
    hit_pixels: int = 0
    single: int = 0
    merged: int = 0
    dropped: int = 0
    out_of_range: int = 0

    @property
    def histogrammed(self) -> int:
        """Events added to the spectra."""
        return self.single + self.merged - self.out_of_range

    def __iadd__(self, other: EventCounters) -> EventCounters:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    def as_dict(self) -> dict[str, int]:
        """The counters by name (for a consumer to publish or record)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    @classmethod
    def _from_array(cls, counts: np.ndarray) -> EventCounters:
        return cls(*(int(value) for value in counts))


@dataclass(frozen=True)
class _Tables:
    """Per-pixel arrays the kernel reads, flattened, computed once per calibration and config."""

    threshold_adu: np.ndarray  # int32: hit when ADC >= this
    gradient: np.ndarray
    pedestal: np.ndarray
    intercept: np.ndarray
    mode: int  # 0: no clustering; otherwise the largest event kept
    energy_min_kev: float
    inverse_bin_width: float
    n_bins: int


def _tables(calibration: HexitecCalibration, config: HexitecConfig) -> _Tables:
    gradient = calibration.gradient_kev_per_adu.ravel()
    pedestal = calibration.pedestal_adu.ravel()
    intercept = calibration.intercept_kev.ravel()
    if config.threshold_kev is not None:
        # E > threshold  <=>  ADC > pedestal + (threshold - intercept) / gradient, as gradient > 0
        limit = pedestal + (config.threshold_kev - intercept) / gradient
    else:
        limit = pedestal + config.threshold_adu
    # ADC is an integer, so ADC > limit  <=>  ADC >= floor(limit) + 1
    threshold = np.clip(np.floor(limit) + 1, 0, _NEVER_HIT_ADU).astype(np.int32)
    if config.charge_sharing == "off":
        mode = _MODE_OFF
    else:
        mode = config.max_event_pixels if config.charge_sharing == "sum" else 1
    width = (config.energy_max_kev - config.energy_min_kev) / config.n_bins
    return _Tables(threshold, gradient, pedestal, intercept, mode, config.energy_min_kev, 1.0 / width, config.n_bins)


def _check_frames(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Frames as a C-contiguous uint16 (n, n_rows, n_cols) array (a view when possible)."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint16:
        raise ValueError(f"frames must be raw uint16 ADC values, got dtype {frames.dtype}")
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[1:] != tuple(shape):
        raise ValueError(f"frames must have shape (n_frames, {shape[0]}, {shape[1]}), got {frames.shape}")
    return np.ascontiguousarray(frames)


def _check_cube(out_cube: np.ndarray, shape: tuple[int, int], n_bins: int) -> None:
    if not isinstance(out_cube, np.ndarray) or out_cube.dtype not in _CUBE_DTYPES:
        raise ValueError(f"out_cube must be a uint32 or int64 array, got {getattr(out_cube, 'dtype', out_cube)!r}")
    if out_cube.shape != (*shape, n_bins) or not out_cube.flags.c_contiguous or not out_cube.flags.writeable:
        raise ValueError(
            f"out_cube must be a writeable C-contiguous array of shape {(*shape, n_bins)}, got {out_cube.shape}"
        )


# the kernel's counters, in EventCounters' field order
_FRAMES, _HITS, _SINGLE, _MERGED, _DROPPED, _OUT_OF_RANGE = range(6)


@numba.njit(cache=True, nogil=True)
def _kernel_events(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    frames, n_cols, threshold, gradient, pedestal, intercept, mode, e_min, inverse_width, n_bins, cube, counts
):  # pragma: no cover  (compiled)
    n_frames, n_pixels = frames.shape
    hits = np.empty(n_pixels, np.int64)
    queue = np.empty(n_pixels, np.int64)
    state = np.zeros(n_pixels, np.uint8)  # 0: not hit, 1: hit, 2: already in an event
    for f in range(n_frames):
        frame = frames[f]
        n_hits = 0
        for p in range(n_pixels):
            if frame[p] >= threshold[p]:
                hits[n_hits] = p
                n_hits += 1
        counts[_HITS] += n_hits
        for h in range(n_hits):
            state[hits[h]] = 1
        for h in range(n_hits):
            seed = hits[h]
            if state[seed] != 1:
                continue
            # breadth-first search of the event through 4-neighbours that are hit
            state[seed] = 2
            queue[0] = seed
            size, head = 1, 0
            if mode != _MODE_OFF:
                while head < size:
                    p = queue[head]
                    head += 1
                    row, col = p // n_cols, p % n_cols
                    for k in range(4):
                        if k == 0:
                            if row == 0:
                                continue
                            q = p - n_cols
                        elif k == 1:
                            if p + n_cols >= n_pixels:
                                continue
                            q = p + n_cols
                        elif k == 2:
                            if col == 0:
                                continue
                            q = p - 1
                        else:
                            if col == n_cols - 1:
                                continue
                            q = p + 1
                        if state[q] == 1:
                            state[q] = 2
                            queue[size] = q
                            size += 1
            if mode != _MODE_OFF and size > mode:
                counts[_DROPPED] += 1
                continue
            total, best, best_energy = 0.0, seed, -np.inf
            for k in range(size):
                p = queue[k]
                energy = gradient[p] * (np.float64(frame[p]) - pedestal[p]) + intercept[p]
                total += energy
                if energy > best_energy or (energy == best_energy and p < best):
                    best, best_energy = p, energy
            if size == 1:
                counts[_SINGLE] += 1
            else:
                counts[_MERGED] += 1
            position = (total - e_min) * inverse_width
            if 0.0 <= position < n_bins:
                cube[best, int(position)] += 1
            else:
                counts[_OUT_OF_RANGE] += 1
        for h in range(n_hits):
            state[hits[h]] = 0
    counts[_FRAMES] += n_frames


def _run(frames: np.ndarray, tables: _Tables, shape: tuple[int, int], out_cube: np.ndarray) -> EventCounters:
    counts = np.zeros(6, np.int64)
    if frames.shape[0]:
        _kernel_events(
            frames.reshape(frames.shape[0], -1),
            shape[1],
            tables.threshold_adu,
            tables.gradient,
            tables.pedestal,
            tables.intercept,
            tables.mode,
            tables.energy_min_kev,
            tables.inverse_bin_width,
            tables.n_bins,
            out_cube.reshape(-1, tables.n_bins),
            counts,
        )
    return EventCounters._from_array(counts)


def process_frames(
    frames: np.ndarray, calibration: HexitecCalibration, config: HexitecConfig, out_cube: np.ndarray
) -> EventCounters:
    """Run the event chain on a batch of raw frames and add the events to ``out_cube``.

    Parameters
    ----------
    frames : ndarray of uint16, shape (n_frames, n_rows, n_cols) or (n_rows, n_cols)
        Raw ADC frames (not modified).
    calibration : HexitecCalibration
    config : HexitecConfig
    out_cube : ndarray of uint32 or int64, shape (n_rows, n_cols, config.n_bins)
        Per-pixel spectra, counts per energy bin; the events are added to it in place.

    Returns
    -------
    EventCounters
        Counters of this batch.

    Raises
    ------
    ValueError
        If ``frames`` is not uint16 of the calibration's shape, or ``out_cube`` does not fit.
    """
    frames = _check_frames(frames, calibration.shape)
    _check_cube(out_cube, calibration.shape, config.n_bins)
    return _run(frames, _tables(calibration, config), calibration.shape, out_cube)


class SpectrumAccumulator:
    """Per-pixel spectra accumulated over batches of frames: the state of a live XCS consumer.

    Parameters
    ----------
    calibration : HexitecCalibration
    config : HexitecConfig, optional
        Defaults to ``HexitecConfig()`` (3 keV threshold, two-pixel events summed, 0-200 keV
        in 0.2 keV bins).

    Examples
    --------
    A consumer loop: ``accumulator.add(frames)`` for each batch received, then publish
    ``accumulator.spectra`` (and an EMF map of it) every so often; ``reset()`` between
    acquisitions.
    """

    def __init__(self, calibration: HexitecCalibration, config: HexitecConfig | None = None):
        self.calibration = calibration
        self.config = config if config is not None else HexitecConfig()
        self._tables = _tables(calibration, self.config)  # fixed geometry: computed once
        self._cube = np.zeros((*calibration.shape, self.config.n_bins), np.uint32)
        self.counters = EventCounters()

    def add(self, frames: np.ndarray) -> EventCounters:
        """Add a batch of raw uint16 frames, shape (n_frames, n_rows, n_cols); returns its counters."""
        batch = _run(_check_frames(frames, self.calibration.shape), self._tables, self.calibration.shape, self._cube)
        self.counters += batch
        return batch

    @property
    def spectra(self) -> np.ndarray:
        """A copy of the spectra, counts, uint32, shape (n_rows, n_cols, n_bins)."""
        return self._cube.copy()

    @property
    def energy_edges_kev(self) -> np.ndarray:
        """Bin edges of :attr:`spectra`, keV, shape (n_bins + 1,)."""
        return self.config.energy_edges_kev

    @property
    def n_frames(self) -> int:
        """Frames added since the last reset."""
        return self.counters.frames

    def reset(self) -> None:
        """Empty the spectra and the counters (same calibration and config)."""
        self._cube[...] = 0
        self.counters = EventCounters()
