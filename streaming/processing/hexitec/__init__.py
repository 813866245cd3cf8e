"""HEXITEC event chain: raw uint16 frames in, per-pixel energy spectra out.

- :class:`HexitecConfig`: threshold (keV or ADU), charge-sharing rule, energy binning.
- :class:`HexitecCalibration`: per-pixel gradient, intercept and pedestal;
  :func:`pedestal_from_darks` and :func:`read_calibration_files` build it.
- :class:`EventCounters`: frames, hit pixels, events kept single / merged / dropped.
- :func:`process_frames`: the chain on one batch of frames, histogrammed into a cube.
- :class:`SpectrumAccumulator`: the streaming state (cube and counters) for a consumer:
  ``add(frames)`` per batch, ``spectra`` when publishing, ``reset()`` between acquisitions.

Modules:

- :mod:`.config`: the detector's constants and :class:`HexitecConfig`.
- :mod:`.calibration`: :class:`HexitecCalibration`, :func:`read_calibration_files`,
  :func:`pedestal_from_darks`.
- :mod:`.events`: the per-frame chain (threshold, clustering, charge sharing) and its numba
  kernel, :func:`process_frames`, :class:`EventCounters`.
- :mod:`.spectra`: :class:`SpectrumAccumulator`.

Energies in keV, ADC values in ADU.
"""

from .calibration import HexitecCalibration, pedestal_from_darks, read_calibration_files
from .config import CHARGE_SHARING_MODES, HEXITEC_ENERGY_EDGES_KEV, HEXITEC_SHAPE, HexitecConfig
from .events import EventCounters, process_frames
from .spectra import SpectrumAccumulator

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
