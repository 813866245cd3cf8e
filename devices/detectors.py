"""Simulated streaming detectors: Pilatus3 X CdTe 2M, PCO.Edge 5.5 and HEXITEC.

Each is a :class:`~devices.streaming_detector.StreamingDetector` (flown, frames on the frame
channel, StreamResource/StreamDatum) whose frames come from :mod:`simulators`. The simulated
sample is lit by the beam where the stages put it: a frame's physics comes from the stage
positions, not from the plan's indices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from simulators.coin_cell import CoinCellPhantom
from simulators.hexitec import FRAME_RATE_HZ, SHAPE, HexitecSimulator
from simulators.xcs import XcsModel, sheet_column_atoms
from simulators.xct import XctScan
from simulators.xrdct import XrdctSimulation

from .motion import Clock, SimAxis, SimBeamShaper, SimShutter
from .sink import FrameSink
from .streaming_detector import (
    Acquisition,
    FrameRecord,
    PositionTriggered,
    StreamingDetector,
    TimeTriggered,
)

__all__ = [
    "PositionTriggered",
    "SimHexitec",
    "SimPcoEdge",
    "SimPilatus",
    "StreamingDetector",
    "TimeTriggered",
]


def _nearest(grid: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(grid - value)))


class SimPilatus(StreamingDetector):
    """Pilatus3 X CdTe 2M behind the XRD-CT cell (:class:`~simulators.xrdct.XrdctSimulation`).

    A frame shows the ray of the simulation nearest to where the translation and rotation
    stages put the cell (the simulated cell is defined on the simulation's grid); with the
    shutter closed it counts nothing. ``soc_source`` (e.g. the potentiostat's cell) sets the
    cell's state of charge at each stage.
    """

    max_frame_rate_hz = 250.0
    frame_dtype = "<i4"

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str = "pilatus",
        sink: FrameSink,
        clock: Clock,
        simulation: XrdctSimulation,
        translation: SimAxis,
        rotation: SimAxis,
        shutter: SimShutter | None = None,
        soc_source: Callable[[], float] | None = None,
        **kwargs: Any,
    ) -> None:
        self.simulation = simulation
        self.frame_shape = tuple(simulation.detector.shape)
        super().__init__(prefix, name=name, sink=sink, clock=clock, **kwargs)
        self.translation, self.rotation, self.shutter = translation, rotation, shutter
        self.soc_source = soc_source

    def _follow_the_cell(self) -> None:
        if self.soc_source is not None:
            soc = round(float(self.soc_source()), 2)  # rebuilding the cell is costly: 1 % steps
            if soc != self.simulation.soc:
                self.simulation = self.simulation.with_soc(soc)

    def stage(self) -> list[object]:
        self._follow_the_cell()
        return super().stage()

    def _frames(self, acquisition: Acquisition, times: np.ndarray) -> Iterator[FrameRecord]:
        self._follow_the_cell()  # the cell cycles while an operando series runs (staged once)
        sim = self.simulation
        angle = self.rotation.position
        angle_index = _nearest(sim.angles_deg, angle)
        dark = self.shutter is not None and not self.shutter.is_open
        flown = isinstance(acquisition, PositionTriggered) and acquisition.axis is self.translation
        centres_mm = self._centres(acquisition) if flown else np.full(acquisition.n_frames, self.translation.position)
        for i, start in enumerate(times):
            x_mm = float(centres_mm[i])
            if dark:
                data = np.where(sim.gaps, -1, 0).astype(np.int32)
            else:
                data = sim.frame(angle_index, _nearest(sim.translations_mm, x_mm))
            positions = {"translation": x_mm, "rotation": angle}
            yield data, positions, self._tags(acquisition, i), float(start)


class SimPcoEdge(StreamingDetector):
    """PCO.Edge 5.5 behind the coin cell (:class:`~simulators.xct.XctScan`).

    Projections at the rotation stage's angle (read from its trajectory when flown), flat
    fields when the sample is moved out of the beam (``|translation| > out_of_beam_mm``),
    darks with the shutter closed.
    """

    max_frame_rate_hz = 100.0
    _BATCH = 50  # frames a message (0.5 s at the fastest): the simulated clock makes bursts of them

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str = "pco",
        sink: FrameSink,
        clock: Clock,
        scan: XctScan,
        rotation: SimAxis,
        translation: SimAxis,
        shutter: SimShutter | None = None,
        soc_source: Callable[[], float] | None = None,
        out_of_beam_mm: float = 15.0,
        **kwargs: Any,
    ) -> None:
        self.scan = scan
        self.frame_shape = (scan.n_rows, scan.n_cols)
        super().__init__(prefix, name=name, sink=sink, clock=clock, **kwargs)
        self.rotation, self.translation, self.shutter = rotation, translation, shutter
        self.soc_source = soc_source
        self.out_of_beam_mm = out_of_beam_mm

    def _frames(self, acquisition: Acquisition, times: np.ndarray) -> Iterator[FrameRecord]:
        n = acquisition.n_frames
        if isinstance(acquisition, PositionTriggered) and acquisition.axis is self.rotation:
            angles = self._centres(acquisition)
        else:
            angles = np.full(n, self.rotation.position)
        x_mm = self.translation.position
        if self.shutter is not None and not self.shutter.is_open:
            images = self.scan.darks(n)
        elif abs(x_mm) > self.out_of_beam_mm:
            images = self.scan.flats(n)
        else:
            soc = float(self.soc_source()) if self.soc_source is not None else 0.0
            images = self.scan.projections_at(angles, soc)
        counted = acquisition.counter_values if isinstance(acquisition, PositionTriggered) else range(n)
        if not np.all(np.diff(counted) == 1):  # a batch's counter counts on by one
            for i in range(n):
                positions = {"rotation": float(angles[i]), "translation": x_mm}
                yield images[i], positions, self._tags(acquisition, i), float(times[i])
            return
        for first in range(0, n, self._BATCH):  # a message per batch: in simulated time the
            last = min(n, first + self._BATCH)  # projections come in bursts of hundreds
            positions = {"rotation": angles[first:last], "translation": x_mm}
            yield images[first:last], positions, self._tags(acquisition, first), times[first:last]


class SimHexitec(StreamingDetector):
    """HEXITEC 80 x 80 spectroscopic detector imaging the sheet beam through a pinhole.

    Frames at the fixed 9118.87 Hz; the sheet lies at the vertical stage's height (mm from
    the bottom of the can) with the beam shaper's vertical gap as thickness. A
    :class:`~simulators.hexitec.HexitecSimulator` per (height, thickness, state of charge),
    all sharing one per-pixel calibration (``seed``), so :meth:`write_calibration` holds for
    every acquisition. Frames are generated, and sent, in batches of 1000 (the simulator's sweet
    spot, and one message instead of a thousand: 0.11 s of frames).
    """

    max_frame_rate_hz = FRAME_RATE_HZ
    frame_shape = SHAPE
    _BATCH = 1000

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str = "hexitec",
        sink: FrameSink,
        clock: Clock,
        phantom: CoinCellPhantom,
        vertical: SimAxis,
        beam: SimBeamShaper,
        shutter: SimShutter | None = None,
        soc_source: Callable[[], float] | None = None,
        model: XcsModel | None = None,
        occupancy: float = 0.01,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, name=name, sink=sink, clock=clock, **kwargs)
        self.phantom, self.vertical, self.beam, self.shutter = phantom, vertical, beam, shutter
        self.soc_source = soc_source
        self.model = model or XcsModel()
        self.occupancy = occupancy
        self.seed = seed
        self._simulators: dict[tuple[float, float, float], HexitecSimulator] = {}

    def simulator(self) -> HexitecSimulator:
        """The simulator of the sheet as the stages and the cell are now."""
        soc = round(float(self.soc_source()), 3) if self.soc_source is not None else 0.0
        key = (round(self.vertical.position, 4), round(float(self.beam.vertical_gap.get()), 4), soc)
        if key not in self._simulators:
            if len(self._simulators) > 16:  # one per height and state: keep memory bounded
                self._simulators.pop(next(iter(self._simulators)))
            atoms = sheet_column_atoms(self.phantom, soc, key[0] * 1e-3, key[1] * 1e-3)
            # the same seed draws the same per-pixel calibration; frames then get their own stream
            sim = HexitecSimulator(atoms, self.model, self.occupancy, rng=np.random.default_rng(self.seed))
            sim.rng = np.random.default_rng([self.seed, len(self._simulators) + 1, int(key[0] * 1e4)])
            self._simulators[key] = sim
        return self._simulators[key]

    def write_calibration(self, folder: Any) -> dict[str, Any]:
        """The per-pixel gradient and intercept files (as HEXITEC calibrations come)."""
        return self.simulator().write_calibration(folder)

    def _frames(self, acquisition: Acquisition, times: np.ndarray) -> Iterator[FrameRecord]:
        sim = self.simulator()
        dark = self.shutter is not None and not self.shutter.is_open
        positions = {"vertical": self.vertical.position}
        for first in range(0, acquisition.n_frames, self._BATCH):  # a message per batch: 9 kHz of
            n = min(self._BATCH, acquisition.n_frames - first)  # single frames outran the recorder
            batch = sim.dark_frames(n) if dark else sim.frames(n)
            yield batch, positions, self._tags(acquisition, first), times[first : first + n]
