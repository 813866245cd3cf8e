"""bluesky plans of the two end stations.

- :func:`xrdct_zigzag` (:mod:`.xrdct`): zigzag XRD-CT, flown translation, stepped rotation.
- :func:`xct_scan` (:mod:`.xct`): darks, flats and projections over a flown rotation.
- :func:`xcs_acquire` (:mod:`.xcs`): HEXITEC spectra with the fan beam at several heights.
- :func:`run_protocol`, :func:`parse_protocol` (:mod:`.cycling`): electrochemistry alone.
- :func:`operando_xcsct`, :func:`operando_xrdct` (:mod:`.operando`): acquisitions while cycling.
- :func:`suspend_on_beam_loss` (:mod:`.suspenders`): the scan waits, shutter closed, while the
  beam is down (:func:`wait_on_simulated_clock` for a simulated beamline).
- :class:`ScanProgress` (:mod:`.progress`): progress bars for any of them.
"""

from .cycling import CyclingProtocol, PotentiostatLimits, parse_protocol, run_protocol
from .operando import operando_xcsct, operando_xrdct
from .progress import ScanProgress
from .suspenders import suspend_on_beam_loss, wait_on_simulated_clock
from .xcs import xcs_acquire
from .xct import xct_scan
from .xrdct import xrdct_zigzag

__all__ = [
    "CyclingProtocol",
    "PotentiostatLimits",
    "ScanProgress",
    "operando_xcsct",
    "operando_xrdct",
    "parse_protocol",
    "run_protocol",
    "suspend_on_beam_loss",
    "wait_on_simulated_clock",
    "xcs_acquire",
    "xct_scan",
    "xrdct_zigzag",
]
