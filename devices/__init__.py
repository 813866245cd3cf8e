"""ophyd devices of the two end stations: simulated ones driven by :mod:`simulators`, and
EPICS classes with the same names and ``set`` values (:mod:`devices.epics`).

- :mod:`.motion`: :class:`SimAxis` (translation, rotation, vertical stages), :class:`SimShutter`,
  :class:`SimBeamShaper` (pencil / box / fan beam), :class:`ClockDelay`.
- :mod:`.streaming_detector`: :class:`StreamingDetector`, flown with :class:`TimeTriggered` or
  :class:`PositionTriggered` acquisitions, streaming its frames through a :class:`FrameSink`
  and describing them as StreamResource/StreamDatum.
- :mod:`.detectors`: :class:`SimPilatus`, :class:`SimPcoEdge`, :class:`SimHexitec`.
- :mod:`.potentiostat`, :mod:`.protocol`: :class:`SimPotentiostat` running a
  :class:`CyclingProtocol` within :class:`PotentiostatLimits`.
- :mod:`.ring`: :class:`SimRingCurrent`, the storage ring's current, with beam dumps.
- :mod:`.beamline`: :func:`sim_xrdct_beamline`, :func:`sim_xcsct_beamline`.
"""

from .beamline import XcsctBeamline, XrdctBeamline, sim_xcsct_beamline, sim_xrdct_beamline
from .detectors import SimHexitec, SimPcoEdge, SimPilatus
from .motion import BEAM_SHAPES, ClockDelay, SimAxis, SimBeamShaper, SimShutter, Trajectory
from .potentiostat import SimPotentiostat
from .protocol import CurrentStep, CyclingProtocol, PotentiostatLimits, RestStep, VoltageStep, parse_protocol
from .ring import SimRingCurrent
from .sink import FrameSink
from .streaming_detector import PositionTriggered, StreamingDetector, TimeTriggered

__all__ = [
    "BEAM_SHAPES",
    "ClockDelay",
    "CurrentStep",
    "CyclingProtocol",
    "FrameSink",
    "PositionTriggered",
    "PotentiostatLimits",
    "RestStep",
    "SimAxis",
    "SimBeamShaper",
    "SimHexitec",
    "SimPcoEdge",
    "SimPilatus",
    "SimPotentiostat",
    "SimRingCurrent",
    "SimShutter",
    "StreamingDetector",
    "TimeTriggered",
    "Trajectory",
    "VoltageStep",
    "XcsctBeamline",
    "XrdctBeamline",
    "parse_protocol",
    "sim_xcsct_beamline",
    "sim_xrdct_beamline",
]
