"""Simulated IOCs: the end stations' EPICS records served by caproto and their detectors'
frames by p4p, for the EPICS device classes (:mod:`devices.epics`) to talk to without hardware.

- :mod:`.axis`: a motor record (:class:`AxisIOC`).
- :mod:`.beamline`: shutter, slits, potentiostat (the simulated cell behind it).
- :mod:`.detector`: an areaDetector (:class:`AreaDetectorIOC`): cam PVs, NTNDArray frames.
- :mod:`.stations`: the XRD-CT and XCS-CT end stations (:class:`XrdctStationIOC`,
  :class:`XcsctStationIOC`), every PV of each under one prefix.
- :func:`run_sim_ioc`: serve one (``operando sim-ioc``).
"""

from .axis import AxisIOC
from .beamline import BeamShaperIOC, PotentiostatIOC, ShutterIOC
from .detector import AreaDetectorIOC
from .serve import ca_environment, pva_environment, run_sim_ioc
from .stations import STATIONS, XcsctStationIOC, XrdctStationIOC

__all__ = ["STATIONS", "AreaDetectorIOC", "AxisIOC", "BeamShaperIOC", "PotentiostatIOC", "ShutterIOC",
           "XcsctStationIOC", "XrdctStationIOC", "ca_environment", "pva_environment", "run_sim_ioc"]
