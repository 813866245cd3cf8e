"""The streaming state of a live XCS consumer: :class:`SpectrumAccumulator`.

The cube of per-pixel spectra and the event counters: ``add(frames)`` per batch, ``spectra``
when publishing, ``reset()`` between acquisitions.
"""

from __future__ import annotations

import numpy as np

from .calibration import HexitecCalibration, _check_frames
from .config import HexitecConfig
from .events import EventCounters, _run, _tables

__all__ = ["SpectrumAccumulator"]


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
