"""An areaDetector, simulated: the cam PVs on Channel Access, the frames as NTNDArrays on PV Access.

:class:`AreaDetectorIOC` serves, under its prefix ``P``, what ophyd and our bridge use of an
areaDetector IOC:

- ``Pcam1:Acquire`` / ``Acquire_RBV``, ``AcquireTime``, ``AcquirePeriod``, ``NumImages``,
  ``ImageMode`` (Single, Multiple), ``TriggerMode`` (Internal, External),
  ``ArrayCounter_RBV`` (every frame made, never reset by an acquisition), ``NumImagesCounter_RBV``
  (frames of this acquisition), ``DetectorState_RBV`` (Idle, Acquire, Error, Aborted, ...),
  ``StatusMessage_RBV``, ``ArraySizeX_RBV``/``Y``, ``MaxFrameRate_RBV``;
- ``PPva1:Image``: every frame as an NTNDArray, as NDPluginPva publishes it: ``uniqueId`` the
  array counter, the time stamp the frame's trigger time, and NDAttributes ``position:<axis>``
  (where the axes were, which the IOC knows) and ``index:<name>`` (the plan's indices); with
  ``batches`` set (the HEXITEC's 9.1 kHz), a batch of frames per array, as the simulator makes
  them, with ``batch:counter`` and ``batch:period_s`` (the bridge's batches).

At a beamline two more parts feed a detector, and the simulation serves them beside the cam:

- the **position compare** of a PandA or Zebra, which makes the external triggers:
  ``Ptrig:AXIS`` (the motor record's name) and ``Ptrig:POSITIONS`` (one trigger per position,
  crossed during the move that starts after ``Acquire``);
- the **soft records an attribute file reads** (NDAttribute type EPICS_PV): ``Pattr:INDEX_NAMES``
  (comma-separated) and ``Pattr:INDEX_VALUES`` tag every frame of the acquisition;
  ``Pattr:COUNTER`` names the index that numbers its frames, ``Pattr:COUNTER_VALUES`` its values
  (default 0, 1, 2, ...).

The pixels come from the project's simulated detectors (:meth:`StreamingDetector.simulate
<devices.streaming_detector.StreamingDetector.simulate>`), looking at the IOC's own axes, shutter
and cell. A frame is published when its exposure ends on the wall clock. A trigger position that
the axis never crossed at speed (it stalled or was stopped first, or the position lies in the
ramp or beyond the move) ends the acquisition, after the frames of the positions it did cross,
in the Error state with the reason in ``StatusMessage_RBV``; so does a failure of the simulator.
``Acquire`` = 1 during an acquisition is refused (put 0 aborts it: ``Aborted``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from devices.streaming_detector import PositionTriggered, StreamingDetector, TimeTriggered

from .axis import AxisIOC

__all__ = ["MAX_FRAMES", "AreaDetectorIOC", "AxisView", "ShutterView"]

MAX_FRAMES = 100_000  # trigger positions and counter values an acquisition may have
# areaDetector's, in its order
DETECTOR_STATES = ("Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting", "Error", "Waiting",
                   "Initializing", "Disconnected", "Aborted")  # fmt: skip
IMAGE_MODES = ("Single", "Multiple", "Continuous")
TRIGGER_MODES = ("Internal", "External")
# NDDataType_t, in its order
DATA_TYPES = ("Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float32",
              "Float64")  # fmt: skip
_POLL_S = 0.005
logger = logging.getLogger(__name__)
_ONE_CLIENT = {"max_subscription_backlog": 4}  # long tables a plan writes, nobody monitors


class AxisView:
    """An axis IOC as a simulated detector reads a stage: ``name``, ``position``, ``last_trajectory``."""

    def __init__(self, ioc: AxisIOC, name: str) -> None:
        self.ioc, self.name = ioc, name

    @property
    def position(self) -> float:
        return self.ioc.position

    @property
    def last_trajectory(self) -> Any:
        return self.ioc.last_trajectory


class ShutterView:
    """A shutter IOC as a simulated detector reads a shutter: ``is_open``."""

    def __init__(self, status: Callable[[], str]) -> None:
        self._status = status

    @property
    def is_open(self) -> bool:
        return self._status() == "open"


class _MissedTriggerError(Exception):
    """Triggers the axis did not give."""


def _char(length: int, value: str = "", **kwargs: Any) -> pvproperty:
    return pvproperty(value=value, dtype=ChannelType.CHAR, max_length=length, **kwargs)


def _enum(strings: tuple[str, ...], value: str, **kwargs: Any) -> pvproperty:
    return pvproperty(value=value, dtype=ChannelType.ENUM, enum_strings=strings, **kwargs)


class AreaDetectorIOC(PVGroup):
    """One simulated areaDetector (see the module docstring).

    ``source`` (set by the station once its devices exist): the simulated detector that makes
    the pixels; ``axes``: the station's axes by motor record name, for ``trig:AXIS``.
    """

    acquire = pvproperty(value=0, name="cam1:Acquire")
    acquiring = pvproperty(value=0, name="cam1:Acquire_RBV", read_only=True)
    acquire_time = pvproperty(value=0.01, name="cam1:AcquireTime", units="s", precision=6)
    acquire_period = pvproperty(value=0.01, name="cam1:AcquirePeriod", units="s", precision=6)
    num_images = pvproperty(value=1, name="cam1:NumImages")
    image_mode = _enum(IMAGE_MODES, "Multiple", name="cam1:ImageMode")
    trigger_mode = _enum(TRIGGER_MODES, "Internal", name="cam1:TriggerMode")
    array_counter = pvproperty(value=0, name="cam1:ArrayCounter_RBV", read_only=True)
    images_done = pvproperty(value=0, name="cam1:NumImagesCounter_RBV", read_only=True)
    state = _enum(DETECTOR_STATES, "Idle", name="cam1:DetectorState_RBV", read_only=True)
    message = _char(256, name="cam1:StatusMessage_RBV", read_only=True)
    size_x = pvproperty(value=0, name="cam1:ArraySizeX_RBV", read_only=True)
    size_y = pvproperty(value=0, name="cam1:ArraySizeY_RBV", read_only=True)
    max_rate = pvproperty(value=0.0, name="cam1:MaxFrameRate_RBV", read_only=True, units="Hz")
    data_type = _enum(DATA_TYPES, "UInt16", name="cam1:DataType_RBV", read_only=True)
    trigger_axis = _char(128, name="trig:AXIS")
    trigger_positions = pvproperty(value=[0.0], name="trig:POSITIONS", max_length=MAX_FRAMES, **_ONE_CLIENT)
    index_names = _char(256, name="attr:INDEX_NAMES")
    index_values = pvproperty(value=[0], name="attr:INDEX_VALUES", max_length=64)
    counter = _char(64, "frame", name="attr:COUNTER")
    counter_values = pvproperty(value=[0], name="attr:COUNTER_VALUES", max_length=MAX_FRAMES, **_ONE_CLIENT)

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.source: StreamingDetector | None = None
        self.axes: dict[str, AxisView] = {}
        self.image: Any = None  # the PV Access image (a p4p SharedPV), made by :meth:`pva_image`
        self.batches = False  # a fast detector's frames leave in batches, as the simulator makes them
        self._task: asyncio.Task | None = None

    @property
    def image_pv(self) -> str:
        return f"{self.prefix}Pva1:Image"

    def pva_image(self) -> Any:
        """The NTNDArray PV of the frames (p4p's SharedPV; p4p is imported only for it)."""
        from p4p.server.thread import SharedPV

        if self.image is None:
            self.image = SharedPV(initial=self._frame_value(np.zeros((1, 1), np.uint16), 0, time.time(), {}))
        return self.image

    @acquire.startup
    async def acquire(self, instance, async_lib) -> None:
        if self.source is not None:
            rows, columns = self.source.frame_shape
            await self.size_x.write(columns)
            await self.size_y.write(rows)
            await self.max_rate.write(self.source.max_frame_rate_hz)
            dtype = np.dtype(self.source.frame_dtype)
            await self.data_type.write(f"{'Float' if dtype.kind == 'f' else 'UInt' if dtype.kind == 'u' else 'Int'}"
                                       f"{dtype.itemsize * 8}")  # fmt: skip

    @acquire.putter
    async def acquire(self, instance, value: int) -> int:
        """1 starts an acquisition (refused, with the reason, if its settings are not
        possible); 0 aborts the one under way."""
        if not value:
            if self._task is not None and not self._task.done():
                self._task.cancel()
            return 0
        if self._task is not None and not self._task.done():
            raise ValueError(f"{self.prefix}: already acquiring (put 0 to abort it first)")
        try:
            acquisition = self._acquisition()
        except ValueError as refused:
            await self.message.write(str(refused)[:255])
            await self.state.write("Error")
            raise
        await self.message.write("Acquiring")
        await self.images_done.write(0)
        await self.acquiring.write(1)
        await self.state.write("Acquire")  # last: a client that sees it sees the rest
        self._task = asyncio.create_task(self._acquire(acquisition, armed_at=time.time()))
        return 1

    def _acquisition(self) -> TimeTriggered | PositionTriggered:
        """The acquisition the PVs describe; ``ValueError`` if it cannot be done."""
        if self.source is None:
            raise ValueError(f"{self.prefix}: no detector behind this IOC")
        n = 1 if self.image_mode.value == "Single" else int(self.num_images.value)
        if self.image_mode.value == "Continuous" or not 1 <= n <= MAX_FRAMES:
            raise ValueError(f"{self.prefix}: {n} images in {self.image_mode.value} mode: 1 to {MAX_FRAMES}, "
                             "Single or Multiple")  # fmt: skip
        exposure, period = float(self.acquire_time.value), float(self.acquire_period.value)
        if not exposure > 0 or max(period, exposure) < 1 / self.source.max_frame_rate_hz - 1e-12:
            raise ValueError(f"{self.prefix}: {max(period, exposure)} s per frame is beyond the detector's "
                             f"{self.source.max_frame_rate_hz} Hz")  # fmt: skip
        names = [name.strip() for name in self.index_names.value.split(",") if name.strip()]
        values = list(self.index_values.value)
        if len(values) < len(names):
            raise ValueError(f"{self.prefix}attr: {len(names)} index names, {len(values)} values")
        indices = {name: int(v) for name, v in zip(names, values, strict=False)}
        counter = self.counter.value.strip() or "frame"
        if self.trigger_mode.value == "Internal":  # its frames are numbered 0, 1, 2, ...
            return TimeTriggered(n, exposure, max(period, exposure), indices=indices, counter=counter)
        counted = list(self.counter_values.value)
        if len(counted) != n:
            raise ValueError(f"{self.prefix}attr:COUNTER_VALUES: {len(counted)} values for {n} images")
        axis = self.axes.get(self.trigger_axis.value.strip())
        if axis is None:
            raise ValueError(f"{self.prefix}trig:AXIS: no axis {self.trigger_axis.value!r} (of {sorted(self.axes)})")
        positions = tuple(float(p) for p in self.trigger_positions.value)
        if len(positions) != n:
            raise ValueError(f"{self.prefix}trig:POSITIONS: {len(positions)} positions for {n} images")
        return PositionTriggered(axis, positions, exposure, counter, tuple(int(c) for c in counted), indices)

    async def _acquire(self, acquisition: TimeTriggered | PositionTriggered, *, armed_at: float) -> None:
        loop = asyncio.get_running_loop()
        made, end_state, message = 0, "Idle", "Done"
        try:
            times, missed = await self._trigger_times(acquisition, armed_at)
            if len(times) < acquisition.n_frames:  # the frames of the positions the move crosses, then the error
                acquisition = dataclasses.replace(acquisition, positions=acquisition.positions[: len(times)],
                                                  counter_values=acquisition.counter_values[: len(times)])  # fmt: skip
            frames = self.source.simulate(acquisition, times) if len(times) else iter(())
            while made < len(times):
                record = await loop.run_in_executor(None, next, frames, None)  # pixels off the event loop
                if record is None:
                    raise RuntimeError(f"the simulator made {made} of {len(times)} frames")
                if self.batches and np.ndim(record[3]) > 0:
                    await self._post_batch(record, acquisition)
                    made += len(record[3])
                    await self.images_done.write(made)
                    continue
                for data, positions, indices, stamp in _single_frames(record, acquisition.counter):
                    await self._wait_for_trigger(acquisition, stamp)
                    await asyncio.sleep(max(0.0, stamp + acquisition.exposure_s - time.time()))
                    await self._post(data, positions, indices, stamp)
                    made += 1
                    await self.images_done.write(made)
            if missed:
                raise _MissedTriggerError(missed)
        except _MissedTriggerError as missed_trigger:
            end_state, message = "Error", str(missed_trigger)
        except asyncio.CancelledError:
            end_state, message = "Aborted", f"aborted after {made} frames"
        except Exception as failure:  # the detector's fault, said where a client looks: the state and message
            logger.exception("%s: acquisition failed", self.prefix)
            end_state, message = "Error", f"{type(failure).__name__}: {failure}"
        finally:
            await self.message.write(message[:255])
            await self.state.write(end_state)
            await self.acquiring.write(0)
            await self.acquire.write(0, verify_value=False)

    async def _trigger_times(self, acquisition: TimeTriggered | PositionTriggered,
                             armed_at: float) -> tuple[np.ndarray, str | None]:  # fmt: skip
        """When each frame starts: on the detector's clock, or where the move (the first after
        arming) crosses each position, up to the first it cannot cross at speed (and why not)."""
        if isinstance(acquisition, TimeTriggered):
            return armed_at + acquisition.period_s * np.arange(acquisition.n_frames), None
        axis = acquisition.axis
        while (move := axis.last_trajectory) is None or move.start_time < armed_at:
            await asyncio.sleep(_POLL_S)  # armed: the triggers come with the next move
        times: list[float] = []
        for position in acquisition.positions:
            try:
                times.append(move.time_at(position))
            except ValueError as error:
                return np.array(times), f"{axis.name}: trigger missed, {error}"
        return np.array(times), None

    async def _wait_for_trigger(self, acquisition: TimeTriggered | PositionTriggered, stamp: float) -> None:
        """Until the axis has been seen past the frame's trigger time; ``_MissedTriggerError`` if its
        move ended (a stall, a stop) or gave way to another before it."""
        if not isinstance(acquisition, PositionTriggered):
            return
        axis = acquisition.axis.ioc
        move = axis.last_trajectory
        while axis.checked_until < stamp and axis.ended_at == math.inf and axis.last_trajectory is move:
            await asyncio.sleep(_POLL_S)
        if stamp > axis.ended_at or axis.last_trajectory is not move:
            where = axis.fields.user_readback_value.value
            raise _MissedTriggerError(f"{acquisition.axis.name} stopped at {where:.4f} before its remaining trigger "
                                      "positions")  # fmt: skip

    async def _post_batch(self, record: tuple, acquisition: TimeTriggered | PositionTriggered) -> None:
        """A batch in one array, as a fast detector's frames travel (see :mod:`streaming.app.bridge`)."""
        data, positions, indices, stamps = record
        stamps = np.asarray(stamps, float)
        await asyncio.sleep(max(0.0, stamps[-1] + acquisition.exposure_s - time.time()))
        first = self.array_counter.value + 1
        period_s = float(np.mean(np.diff(stamps))) if len(stamps) > 1 else acquisition.exposure_s
        self.pva_image().post(self._frame_value(data, first, float(stamps[0]), {
            **{f"position:{name}": float(np.ravel(value)[0]) for name, value in positions.items()},
            **{f"index:{name}": int(value) for name, value in indices.items()},
            "batch:counter": acquisition.counter, "batch:period_s": period_s}))  # fmt: skip
        await self.array_counter.write(first + len(stamps) - 1)

    async def _post(self, data: np.ndarray, positions: dict[str, float], indices: dict[str, int],
                    stamp: float) -> None:  # fmt: skip
        unique_id = self.array_counter.value + 1
        self.pva_image().post(self._frame_value(data, unique_id, stamp, {
            **{f"position:{name}": float(value) for name, value in positions.items()},
            **{f"index:{name}": int(value) for name, value in indices.items()}}))  # fmt: skip
        await self.array_counter.write(unique_id)

    @staticmethod
    def _frame_value(data: np.ndarray, unique_id: int, stamp: float, attributes: dict[str, Any]) -> Any:
        from p4p.nt import NTNDArray

        value = NTNDArray().wrap(data, attrib={"ColorMode": 0, **attributes})
        value["uniqueId"] = unique_id
        value["timeStamp.secondsPastEpoch"], value["timeStamp.nanoseconds"] = int(stamp), int(stamp % 1 * 1e9)
        return value


def _single_frames(record: tuple, counter: str) -> Iterator[tuple[np.ndarray, dict[str, float], dict[str, int], float]]:
    """A simulated detector's record, a frame or a batch (its first frame's tags, ``counter``
    counting on by one), frame by frame."""
    data, positions, indices, stamps = record
    if np.ndim(stamps) == 0:
        yield data, positions, indices, float(stamps)
        return
    for i, stamp in enumerate(np.asarray(stamps, float)):
        frame_positions = {k: float(np.asarray(v)[i]) if np.ndim(v) else float(v) for k, v in positions.items()}
        yield data[i], frame_positions, {**indices, counter: indices[counter] + i}, float(stamp)
