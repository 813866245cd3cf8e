"""The simulated end stations' IOCs: every PV of an XRD-CT or XCS-CT end station under one prefix.

Under a prefix ``P`` (``operando sim-ioc --station xrdct|xcsct --prefix P``), both serve

- ``P{axis}``: a motor record per axis (:class:`~devices.ioc.axis.AxisIOC`), with the limits
  and speeds of the simulated end station's (:mod:`devices.beamline`);
- ``Pshutter:``, ``Pbeam:``, ``Ppotentiostat:`` (:mod:`.beamline`), the potentiostat with the
  station's cell behind it;
- ``P{detector}:cam1:...`` and ``P{detector}:Pva1:Image``: its areaDetectors
  (:class:`~devices.ioc.detector.AreaDetectorIOC`), whose pixels the project's simulated
  detectors make from where the IOC's own stages and shutter put the cell, and its charge.

:class:`XrdctStationIOC`: ``translation``, ``rotation``, the Pilatus (``pilatus:``) on the AAA
cell's XRD-CT simulation (``preset``). :class:`XcsctStationIOC`: ``translation``, ``rotation``,
``vertical``, the PCO.Edge (``pco:``) and the HEXITEC (``hexitec:``) on the coin cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from caproto.server import PVGroup, SubGroup

from devices.detectors import SimHexitec, SimPcoEdge, SimPilatus
from devices.sink import FrameSink
from simulators.battery import AAA_NMC532_GRAPHITE
from simulators.clock import WALL_CLOCK
from simulators.coin_cell import CoinCellPhantom
from simulators.xct import XctScan
from simulators.xrdct import XrdctSimulation

from .axis import AxisIOC
from .beamline import BeamShaperIOC, PotentiostatIOC, ShutterIOC
from .detector import AreaDetectorIOC, AxisView, ShutterView

__all__ = ["STATIONS", "XcsctStationIOC", "XrdctStationIOC"]


class _Reading:
    """A value read as an ophyd signal is (``get()``)."""

    def __init__(self, read: Any) -> None:
        self.get = read


class _BeamView:
    """The beam shaper IOC as the simulated HEXITEC reads the slits."""

    def __init__(self, ioc: BeamShaperIOC) -> None:
        self.vertical_gap = _Reading(lambda: ioc.vertical_gap.value)


class _Station(PVGroup):
    """What every end station has: shutter, slits, potentiostat; detectors added by each."""

    shutter = SubGroup(ShutterIOC, prefix="shutter:")
    beam = SubGroup(BeamShaperIOC, prefix="beam:")
    potentiostat = SubGroup(PotentiostatIOC, prefix="potentiostat:")

    axis_names: tuple[str, ...] = ()
    detector_names: tuple[str, ...] = ()

    def __init__(self, prefix: str, *, speed: float = 1.0, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.potentiostat.speed = speed
        self.views = {name: AxisView(getattr(self, name), name) for name in self.axis_names}
        for detector in self.detectors():
            detector.axes = {view.ioc.prefix: view for view in self.views.values()}

    def detectors(self) -> list[AreaDetectorIOC]:
        return [getattr(self, name) for name in self.detector_names]

    def pva_images(self) -> dict[str, Any]:
        """The frames' PV Access PVs by name (for a p4p server)."""
        return {detector.image_pv: detector.pva_image() for detector in self.detectors()}

    def _shutter_view(self) -> ShutterView:
        return ShutterView(lambda: self.shutter.status.value)

    def _cell_soc(self) -> float:  # read, not advanced: the potentiostat's tick advances the cell
        return float(self.potentiostat.device.battery.state.soc)


class XrdctStationIOC(_Station):
    """The XRD-CT end station (see the module docstring); ``preset``, ``seed``: the simulation's."""

    translation = SubGroup(AxisIOC, prefix="translation", limits=(-15.0, 15.0), velocity=5.0, max_velocity=25.0,
                           acceleration_s=0.05, egu="mm")  # fmt: skip
    rotation = SubGroup(AxisIOC, prefix="rotation", limits=(-370.0, 370.0), velocity=60.0, max_velocity=360.0,
                        acceleration_s=0.1, egu="deg")  # fmt: skip
    potentiostat = SubGroup(PotentiostatIOC, prefix="potentiostat:", cell=AAA_NMC532_GRAPHITE)
    pilatus = SubGroup(AreaDetectorIOC, prefix="pilatus:")

    axis_names = ("translation", "rotation")
    detector_names = ("pilatus",)

    def __init__(self, prefix: str, *, speed: float = 1.0, preset: str = "tiny", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(prefix, speed=speed, **kwargs)
        simulation = XrdctSimulation(preset=preset, soc=0.0, seed=seed)
        self.pilatus.source = SimPilatus(name="pilatus", sink=FrameSink(), clock=WALL_CLOCK, simulation=simulation,
                                         translation=self.views["translation"], rotation=self.views["rotation"],
                                         shutter=self._shutter_view(), soc_source=self._cell_soc)  # fmt: skip


class XcsctStationIOC(_Station):
    """The XCS-CT end station (see the module docstring); ``n_z``, ``occupancy``, ``seed``: the
    coin cell phantom's and the HEXITEC's, as :func:`~devices.beamline.sim_xcsct_beamline`."""

    translation = SubGroup(AxisIOC, prefix="translation", limits=(-30.0, 30.0), velocity=10.0, max_velocity=20.0,
                           acceleration_s=0.1, egu="mm")  # fmt: skip
    rotation = SubGroup(AxisIOC, prefix="rotation", limits=(-720.0, 720.0), velocity=60.0, max_velocity=360.0,
                        acceleration_s=0.1, egu="deg")  # fmt: skip
    vertical = SubGroup(AxisIOC, prefix="vertical", limits=(0.0, 3.2), velocity=1.0, max_velocity=2.0,
                        acceleration_s=0.1, egu="mm")  # fmt: skip
    pco = SubGroup(AreaDetectorIOC, prefix="pco:")
    hexitec = SubGroup(AreaDetectorIOC, prefix="hexitec:")

    axis_names = ("translation", "rotation", "vertical")
    detector_names = ("pco", "hexitec")

    def __init__(self, prefix: str, *, speed: float = 1.0, n_z: int = 32, occupancy: float = 0.01, seed: int = 0,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(prefix, speed=speed, **kwargs)
        phantom = CoinCellPhantom(n_xy=80, n_z=n_z, rng=np.random.default_rng(seed))
        scan = XctScan(phantom, rng=np.random.default_rng([seed, 1]))
        views, shutter = self.views, self._shutter_view()
        self.pco.source = SimPcoEdge(name="pco", sink=FrameSink(), clock=WALL_CLOCK, scan=scan,
                                     rotation=views["rotation"], translation=views["translation"], shutter=shutter,
                                     soc_source=self._cell_soc)  # fmt: skip
        self.hexitec.source = SimHexitec(name="hexitec", sink=FrameSink(), clock=WALL_CLOCK, phantom=phantom,
                                         vertical=views["vertical"], beam=_BeamView(self.beam), shutter=shutter,
                                         soc_source=self._cell_soc, occupancy=occupancy, seed=seed)  # fmt: skip
        self.hexitec.batches = True  # 9.1 kHz: a thousand frames an array


STATIONS = {"xrdct": XrdctStationIOC, "xcsct": XcsctStationIOC}
