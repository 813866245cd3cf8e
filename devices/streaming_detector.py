"""The streaming detector: flown the bluesky way, frames on the frame channel, external assets.

:class:`StreamingDetector` is the base of the simulated detectors (:mod:`devices.detectors`):
``prepare`` takes a :class:`TimeTriggered` or :class:`PositionTriggered` acquisition,
``kickoff`` arms it, ``complete`` acquires it and streams every frame through the
:class:`~devices.sink.FrameSink` (tagged with positions and indices), and ``collect``
describes the frames to bluesky as external assets: one StreamResource per run pointing at
``/entry/instrument/<name>/data`` in the recorder's run file, and StreamDatum documents with
contiguous index ranges. No array is put in an Event.

Position triggering is what a PandA/Zebra does at the beamline: a frame starts when the axis
crosses each trigger position during a constant-speed move; the detector reads the axis'
:class:`~devices.motion.Trajectory` to know when that was.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import event_model
import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from streaming.errors import DeviceError

from .motion import Clock, SimAxis, finished_status
from .sink import FrameSink

__all__ = ["Acquisition", "FrameRecord", "PositionTriggered", "StreamingDetector", "TimeTriggered"]

# one frame: (data, positions, indices, timestamp); or a batch: (frames along the first axis,
# positions (an array per frame where they change), the first frame's indices, the counter
# index then counting on by one per frame, one time stamp per frame)
FrameRecord = tuple[np.ndarray, dict[str, float | np.ndarray], dict[str, int], float | np.ndarray]


@dataclass(frozen=True)
class TimeTriggered:
    """``n_frames`` frames, one every ``period_s`` (default: back to back at ``exposure_s``).

    ``indices`` tag every frame (e.g. ``{"acquisition": 3}``); ``counter`` names the index
    that numbers the frames within the acquisition.
    """

    n_frames: int
    exposure_s: float
    period_s: float | None = None
    indices: Mapping[str, int] = field(default_factory=dict)
    counter: str = "frame"

    def __post_init__(self) -> None:
        if not (isinstance(self.n_frames, int) and self.n_frames >= 1):
            raise ValueError(f"n_frames must be an int >= 1, got {self.n_frames!r}")
        if not (math.isfinite(self.exposure_s) and self.exposure_s > 0):
            raise ValueError(f"exposure_s must be > 0, got {self.exposure_s}")
        if self.period_s is not None and not self.period_s >= self.exposure_s:
            raise ValueError(f"period_s ({self.period_s}) must be >= exposure_s ({self.exposure_s})")


@dataclass(frozen=True)
class PositionTriggered:
    """One frame each time ``axis`` crosses one of ``positions`` (in the order given).

    ``counter_values`` are the values of index ``counter`` of those frames (e.g. the
    translation index, counting down on a backward line); ``indices`` tag every frame.
    """

    axis: SimAxis
    positions: tuple[float, ...]
    exposure_s: float
    counter: str
    counter_values: tuple[int, ...]
    indices: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.positions) < 1 or len(self.positions) != len(self.counter_values):
            raise ValueError("positions and counter_values must be non-empty and of equal length")
        if not (math.isfinite(self.exposure_s) and self.exposure_s > 0):
            raise ValueError(f"exposure_s must be > 0, got {self.exposure_s}")

    @property
    def n_frames(self) -> int:
        return len(self.positions)


Acquisition = TimeTriggered | PositionTriggered


class StreamingDetector(Device):
    """Base of the simulated detectors: flyable, collectable, writes stream assets.

    Subclasses set :attr:`frame_shape`, :attr:`frame_dtype`, :attr:`max_frame_rate_hz` and
    implement :meth:`_frames`.
    """

    acquire_time = Cpt(Signal, value=0.01, kind="config")
    num_captured = Cpt(Signal, value=0, kind="normal")

    frame_shape: tuple[int, ...] = ()
    frame_dtype: str = "<u2"
    max_frame_rate_hz: float = 100.0

    def __init__(self, prefix: str = "", *, name: str, sink: FrameSink, clock: Clock, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.sink = sink
        self.clock = clock
        self._acquisition: Acquisition | None = None
        self._armed_at: float | None = None
        self._reset_run()

    # -- per-run bookkeeping ------------------------------------------------------------------

    def _reset_run(self, run_uid: str | None = None) -> None:
        self._run_uid = run_uid
        self._attempts: dict[tuple[object, ...], int] = {}  # per acquisition (its tags), times armed
        self._n_frames = 0
        self._n_described = 0
        self._resource: event_model.ComposeStreamResourceBundle | None = None
        self.num_captured.put(0)

    def _follow_run(self) -> None:
        run_uid = self.sink.run_uid
        if run_uid != self._run_uid:
            self._reset_run(run_uid)

    def stage(self) -> list[object]:
        self._acquisition = None
        return super().stage()

    # -- flying -------------------------------------------------------------------------------

    def prepare(self, value: Acquisition) -> Status:
        """Arm for one acquisition (checked here, before anything moves)."""
        if not isinstance(value, (TimeTriggered, PositionTriggered)):
            raise TypeError(f"{self.name}: prepare takes a TimeTriggered or PositionTriggered, got {value!r}")
        period = value.period_s or value.exposure_s if isinstance(value, TimeTriggered) else value.exposure_s
        if period < 1 / self.max_frame_rate_hz - 1e-12:
            raise DeviceError(
                f"{self.name}: {period} s per frame is faster than its {self.max_frame_rate_hz} Hz maximum"
            )
        self._follow_run()
        self.acquire_time.put(value.exposure_s)
        self._acquisition = value
        self._armed_at = None
        # an acquisition armed again in a run (re-run after a hard pause or a suspension: bluesky
        # replays its messages) tags its frames with the attempt, so receivers let them supersede
        key = (tuple(sorted(value.indices.items())), value.counter)
        self._attempt = self._attempts[key] = self._attempts.get(key, -1) + 1
        return finished_status(self)

    def kickoff(self) -> Status:
        if self._acquisition is None:
            raise DeviceError(f"{self.name}: kickoff before prepare")
        self._follow_run()
        self._armed_at = self.clock.time()
        return finished_status(self)

    def complete(self) -> Status:
        """Acquire the prepared frames and stream them; the status fails if triggers were missed."""
        status = Status(self)
        try:
            if self._acquisition is None or self._armed_at is None:
                raise DeviceError(f"{self.name}: complete before prepare and kickoff")
            acquisition, self._acquisition = self._acquisition, None
            attempt = {"attempt": self._attempt} if self._attempt else {}
            for data, positions, tags, timestamp in self._frames(acquisition, self._trigger_times(acquisition)):
                indices = {**tags, **attempt}
                if np.ndim(timestamp) == 0:
                    self.sink.publish(self.name, data, positions=positions, indices=indices, timestamp=timestamp)
                    self._n_frames += 1
                else:  # a batch: one message for many frames (a fast detector's)
                    fixed = {k: v for k, v in positions.items() if np.ndim(v) == 0}
                    moving = {k: np.asarray(v).tolist() for k, v in positions.items() if np.ndim(v) > 0}
                    self.sink.publish(self.name, data, positions=fixed, indices=indices, timestamps=timestamp.tolist(),
                                      counter=acquisition.counter, frame_positions=moving)  # fmt: skip
                    self._n_frames += len(timestamp)
            self.num_captured.put(self._n_frames)
        except Exception as error:
            status.set_exception(error)
        else:
            status.set_finished()
        return status

    def _trigger_times(self, acquisition: Acquisition) -> np.ndarray:
        """Start time of every frame on the experiment clock."""
        if isinstance(acquisition, TimeTriggered):
            period = acquisition.period_s or acquisition.exposure_s
            start = self.clock.time()
            self.clock.sleep(acquisition.n_frames * period)  # the detector acquires for this long
            return start + period * np.arange(acquisition.n_frames)
        trajectory = acquisition.axis.last_trajectory
        if trajectory is None or trajectory.start_time < self._armed_at:
            raise DeviceError(
                f"{self.name}: {acquisition.axis.name} did not move after kickoff: "
                f"{acquisition.n_frames} position triggers missed"
            )
        try:
            times = np.array([trajectory.time_at(p) for p in acquisition.positions])
        except ValueError as error:
            raise DeviceError(f"{self.name}: trigger missed, {error} (add run-up to the move)") from error
        if acquisition.n_frames > 1:
            spacing_s = float(np.min(np.abs(np.diff(acquisition.positions)))) / trajectory.velocity
            if spacing_s < acquisition.exposure_s * (1 - 1e-6):
                raise DeviceError(
                    f"{self.name}: triggers {spacing_s:.4g} s apart are shorter than the "
                    f"{acquisition.exposure_s} s exposure: slow the {acquisition.axis.name} axis"
                )
        return times

    def _frames(self, acquisition: Acquisition, times: np.ndarray) -> Iterator[FrameRecord]:
        raise NotImplementedError

    def simulate(self, acquisition: Acquisition, times: np.ndarray) -> Iterator[FrameRecord]:
        """The frames of ``acquisition`` triggered at ``times`` (s), made and not sent: for a
        simulated IOC (:mod:`devices.ioc.detector`), which sends them its own way."""
        return self._frames(acquisition, np.asarray(times, float))

    @staticmethod
    def _centres(acquisition: PositionTriggered) -> np.ndarray:
        """Axis position at the middle of each frame: a trigger opens the exposure, during
        which the axis travels on at its cruise speed."""
        trajectory = acquisition.axis.last_trajectory
        shift = trajectory.direction * trajectory.velocity * acquisition.exposure_s / 2
        return np.asarray(acquisition.positions, float) + shift

    @staticmethod
    def _tags(acquisition: Acquisition, i: int) -> dict[str, int]:
        value = acquisition.counter_values[i] if isinstance(acquisition, PositionTriggered) else i
        return {**acquisition.indices, acquisition.counter: int(value)}

    # -- describing the frames to bluesky -------------------------------------------------------

    @property
    def image_key(self) -> str:
        return f"{self.name}_image"

    def describe_collect(self) -> dict[str, dict[str, Any]]:
        return {
            self.image_key: {
                "source": f"sim://{self.name}",
                "shape": [None, *self.frame_shape],
                "dtype": "array",
                "dtype_numpy": np.dtype(self.frame_dtype).str,
                "external": "STREAM:",
            }
        }

    def get_index(self) -> int:
        """Frames acquired in the open run."""
        return self._n_frames

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """A StreamResource (once per run) and a StreamDatum for frames not yet described."""
        self._follow_run()
        stop = self._n_frames if index is None else min(index, self._n_frames)
        if self._resource is None:
            self._resource = event_model.compose_stream_resource(
                mimetype="application/x-hdf5",
                uri=self.sink.run_file_uri(),
                data_key=self.image_key,
                parameters={
                    "dataset": self.sink.dataset(self.name),
                    "sequence": f"/entry/instrument/{self.name}/sequence",
                    "chunk_shape": [1, *self.frame_shape],
                },
            )
            yield "stream_resource", self._resource.stream_resource_doc
        if stop > self._n_described:
            indices = {"start": self._n_described, "stop": stop}
            yield "stream_datum", self._resource.compose_stream_datum(indices=indices)
            self._n_described = stop
