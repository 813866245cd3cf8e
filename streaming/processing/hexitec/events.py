"""The event chain on a batch of raw frames: threshold, clustering, charge sharing, histogram.

- :class:`EventCounters`: frames, hit pixels, events kept single / merged / dropped.
- :func:`process_frames`: the chain on one batch of frames, histogrammed into a cube.
- :func:`_kernel_events`: the numba kernel, with the per-pixel tables it reads
  (:func:`_tables`) and its driver (:func:`_run`, shared with :mod:`.spectra`).

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

from dataclasses import dataclass, fields

import numba
import numpy as np

from .calibration import HexitecCalibration, _check_frames
from .config import HexitecConfig

__all__ = ["EventCounters", "process_frames"]

_CUBE_DTYPES = (np.dtype(np.uint32), np.dtype(np.int64))
_NEVER_HIT_ADU = 65536  # above every uint16 value
_MODE_OFF = 0


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
