"""Simulated IOCs: the end station's EPICS records served by caproto, for the EPICS device
classes (:mod:`devices.epics`) to talk to without hardware.

- :mod:`.axis`: a motor record (:class:`AxisIOC`).
- :mod:`.beamline`: the end station's IOC (:class:`SimBeamlineIOC`): three axes, shutter, beam
  shaper and a potentiostat with the simulated cell behind it.
- :func:`run_sim_ioc`: serve it on Channel Access (``operando sim-ioc``).
"""

from .axis import AxisIOC
from .beamline import BeamShaperIOC, PotentiostatIOC, ShutterIOC, SimBeamlineIOC
from .serve import run_sim_ioc

__all__ = ["AxisIOC", "BeamShaperIOC", "PotentiostatIOC", "ShutterIOC", "SimBeamlineIOC", "run_sim_ioc"]
