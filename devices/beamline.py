"""Simulated beamlines: every device of an experiment built on one clock and one frame sink.

In IPython::

    from bluesky import RunEngine
    from devices import sim_xrdct_beamline
    from plans import xrdct_zigzag

    bl = sim_xrdct_beamline(preset="tiny")
    RE = RunEngine()
    RE.subscribe(bl.sink)           # frames carry the open run's uid
    RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **bl.zigzag_kwargs()))

Pass ``sink=FrameSink(FramePublisher(...), run_directory=...)`` to stream the frames to a
recorder and consumers; without one the frames are counted and dropped (a dry run).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulators.battery import AAA_NMC532_GRAPHITE, COIN_NMC811_LI, EquivalentCircuitBattery
from simulators.clock import SimulatedClock
from simulators.coin_cell import CoinCellPhantom
from simulators.xct import XctScan
from simulators.xrdct import XrdctSimulation

from .detectors import SimHexitec, SimPcoEdge, SimPilatus
from .motion import ClockDelay, SimAxis, SimBeamShaper, SimShutter
from .potentiostat import SimPotentiostat
from .protocol import PotentiostatLimits
from .ring import SimRingCurrent
from .sink import FrameSink

__all__ = ["XcsctBeamline", "XrdctBeamline", "sim_xcsct_beamline", "sim_xrdct_beamline"]


@dataclass
class XrdctBeamline:
    """The XRD-CT end station: hexapod translation, rotation, pencil beam, Pilatus, cell."""

    clock: SimulatedClock
    sink: FrameSink
    translation: SimAxis
    rotation: SimAxis
    shutter: SimShutter
    beam: SimBeamShaper
    pilatus: SimPilatus
    potentiostat: SimPotentiostat
    delay: ClockDelay
    ring: SimRingCurrent

    def zigzag_kwargs(self, exposure_s: float = 0.01) -> dict[str, Any]:
        """The scan that matches the simulated cell's grid (for ``xrdct_zigzag``)."""
        sim = self.pilatus.simulation
        return {
            "n_translations": sim.preset.n_translations,
            "n_angles": sim.preset.n_angles,
            "translation_range": (float(sim.translations_mm[0]), float(sim.translations_mm[-1])),
            "angle_range": tuple(sim.angle_range_deg),
            "exposure": exposure_s,
            "poni": sim.integrator.get_config(),
            "shutter": self.shutter,
            # what was simulated, so a re-analysis takes the same detector (radial bins, line width)
            "md": {"simulation": {"xrdct_preset": sim.preset.name, "seed": sim.seed}},
        }


def sim_xrdct_beamline(
    *,
    preset: str = "tiny",
    sink: FrameSink | None = None,
    clock: SimulatedClock | None = None,
    soc: float = 0.0,
    seed: int = 0,
    sample_interval_s: float = 30.0,
    beam_dumps: Sequence[tuple[float, float]] = (),
) -> XrdctBeamline:
    """The XRD-CT devices on a simulated clock, around the AAA NMC532/graphite cell;
    ``beam_dumps``: ``(start, duration)`` of each loss of the ring's beam, seconds from now on
    the clock, and seconds."""
    clock = clock or SimulatedClock(start=time.time())
    sink = sink or FrameSink()
    battery = EquivalentCircuitBattery(AAA_NMC532_GRAPHITE, soc=soc)
    potentiostat = SimPotentiostat(
        name="potentiostat", clock=clock, battery=battery, sample_interval_s=sample_interval_s,
        limits=PotentiostatLimits(2.75, 4.2, 2.0 * battery.nominal_capacity_ah),
    )  # fmt: skip
    translation = SimAxis(name="translation", clock=clock, limits=(-15.0, 15.0), velocity=5.0, max_velocity=25.0,
                          acceleration_s=0.05, egu="mm")  # fmt: skip
    rotation = SimAxis(name="rotation", clock=clock, limits=(-370.0, 370.0), velocity=60.0, max_velocity=360.0,
                       acceleration_s=0.1, egu="deg")  # fmt: skip
    shutter = SimShutter(name="shutter", clock=clock)
    beam = SimBeamShaper(name="beam", clock=clock)
    simulation = XrdctSimulation(preset=preset, soc=round(soc, 2), seed=seed)
    pilatus = SimPilatus(name="pilatus", sink=sink, clock=clock, simulation=simulation, translation=translation,
                         rotation=rotation, shutter=shutter, soc_source=potentiostat.cell_soc)  # fmt: skip
    return XrdctBeamline(clock, sink, translation, rotation, shutter, beam, pilatus, potentiostat,
                         ClockDelay(name="delay", clock=clock), _ring(clock, beam_dumps))  # fmt: skip


def _ring(clock: SimulatedClock, beam_dumps: Sequence[tuple[float, float]]) -> SimRingCurrent:
    now = clock.time()
    return SimRingCurrent(name="ring", clock=clock, dumps=[(now + start, duration) for start, duration in beam_dumps])


@dataclass
class XcsctBeamline:
    """The XCS-CT end station: rotation, sample translation (in/out for flats), vertical
    stage, beam shaper (box for XCT, fan for XCS), PCO.Edge, HEXITEC, coin cell."""

    clock: SimulatedClock
    sink: FrameSink
    rotation: SimAxis
    translation: SimAxis
    vertical: SimAxis
    shutter: SimShutter
    beam: SimBeamShaper
    pco: SimPcoEdge
    hexitec: SimHexitec
    potentiostat: SimPotentiostat
    delay: ClockDelay
    ring: SimRingCurrent

    @property
    def phantom(self) -> CoinCellPhantom:
        return self.hexitec.phantom

    def cathode_heights_mm(self, n: int = 3) -> np.ndarray:
        """``n`` sheet heights through the cathode (mm above the bottom of the can)."""
        bottom, top = self.phantom.cell.layers_m["cathode"]
        return (bottom + (np.arange(n) + 0.5) * (top - bottom) / n) * 1e3


def sim_xcsct_beamline(
    *,
    sink: FrameSink | None = None,
    clock: SimulatedClock | None = None,
    soc: float = 0.0,
    n_z: int = 32,
    occupancy: float = 0.01,
    seed: int = 0,
    sample_interval_s: float = 30.0,
    run_directory: Path | None = None,
    beam_dumps: Sequence[tuple[float, float]] = (),
) -> XcsctBeamline:
    """The XCS-CT devices on a simulated clock, around the NMC811/Li coin cell (``beam_dumps``
    as for :func:`sim_xrdct_beamline`)."""
    clock = clock or SimulatedClock(start=time.time())
    sink = sink or FrameSink(run_directory=run_directory)
    rng = np.random.default_rng(seed)
    phantom = CoinCellPhantom(n_xy=80, n_z=n_z, rng=rng)
    battery = EquivalentCircuitBattery(COIN_NMC811_LI, soc=soc)
    potentiostat = SimPotentiostat(name="potentiostat", clock=clock, battery=battery,
                                   sample_interval_s=sample_interval_s)  # fmt: skip
    rotation = SimAxis(name="rotation", clock=clock, limits=(-720.0, 720.0), velocity=60.0, max_velocity=360.0,
                       acceleration_s=0.1, egu="deg")  # fmt: skip
    translation = SimAxis(name="translation", clock=clock, limits=(-30.0, 30.0), velocity=10.0, max_velocity=20.0,
                          acceleration_s=0.1, egu="mm")  # fmt: skip
    vertical = SimAxis(name="vertical", clock=clock, limits=(0.0, 3.2), velocity=1.0, max_velocity=2.0,
                       acceleration_s=0.1, egu="mm")  # fmt: skip
    shutter = SimShutter(name="shutter", clock=clock)
    beam = SimBeamShaper(name="beam", clock=clock)
    scan = XctScan(phantom, rng=np.random.default_rng([seed, 1]))
    pco = SimPcoEdge(name="pco", sink=sink, clock=clock, scan=scan, rotation=rotation, translation=translation,
                     shutter=shutter, soc_source=potentiostat.cell_soc)  # fmt: skip
    hexitec = SimHexitec(name="hexitec", sink=sink, clock=clock, phantom=phantom, vertical=vertical, beam=beam,
                         shutter=shutter, soc_source=potentiostat.cell_soc, occupancy=occupancy, seed=seed)  # fmt: skip
    return XcsctBeamline(clock, sink, rotation, translation, vertical, shutter, beam, pco, hexitec, potentiostat,
                         ClockDelay(name="delay", clock=clock), _ring(clock, beam_dumps))  # fmt: skip
