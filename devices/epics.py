"""EPICS classes beside the simulated ones: the same component names and ``set`` values,
so moving from simulation to the beamline changes how devices are constructed, not the plans.

- :class:`EpicsAxis`: ophyd's ``EpicsMotor`` plus ``max_velocity`` (``.VMAX``).
- :class:`EpicsShutter`: command and status PVs, ``set("open" | "closed")``.
- :class:`EpicsBeamShaper`: slit gap PVs, ``set("pencil" | "box" | "fan" | (h_mm, v_mm))``.
- :class:`EpicsPotentiostat`: readbacks and setpoints of a potentiostat IOC; ``set(protocol)``
  validates the protocol against the limits read from the IOC, refuses it with
  :class:`~streaming.errors.LimitError` before any PV is written, then loads the step table
  into waveform PVs and starts it; ``stop()`` writes open circuit.

- :class:`EpicsAreaDetector`: an areaDetector IOC flown like the simulated detectors
  (``prepare`` / ``kickoff`` / ``complete`` / ``collect``), so the plans run on it unchanged;
  its frames leave the IOC over PV Access and reach the frame channel through the bridge
  (``operando bridge pva``), which numbers them by ``uniqueId``.

Instantiating these classes needs an EPICS control layer (``pip install pyepics`` or
``caproto``). :mod:`devices.ioc` serves every PV they use from a simulated end station
(``operando sim-ioc``): the tests run them against it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor, EpicsSignal, EpicsSignalRO
from ophyd.status import Status, SubscriptionStatus
from ophyd.utils.errors import DisconnectedError

from simulators.clock import WALL_CLOCK
from streaming.errors import DeviceError

from .motion import BEAM_SHAPES
from .protocol import CurrentStep, CyclingProtocol, PotentiostatLimits, VoltageStep
from .sink import FrameSink
from .streaming_detector import Acquisition, StreamingDetector, TimeTriggered

__all__ = ["EpicsAreaDetector", "EpicsAxis", "EpicsBeamShaper", "EpicsPotentiostat", "EpicsShutter"]


class EpicsAxis(EpicsMotor):
    """A motor record axis, with its maximum speed for fly scans."""

    max_velocity = Cpt(EpicsSignal, ".VMAX", kind="config")


class EpicsShutter(Device):
    command = Cpt(EpicsSignal, "CMD", string=True, kind="omitted")
    status = Cpt(EpicsSignalRO, "STA", string=True, kind="normal")

    def set(self, value: str, **kwargs: Any) -> Status:
        if value not in ("open", "closed"):
            raise ValueError(f"{self.name}: set 'open' or 'closed', got {value!r}")
        wanted = value
        self.command.put(wanted)
        return SubscriptionStatus(self.status, lambda value, **_: value == wanted, run=True)


class EpicsBeamShaper(Device):
    horizontal_gap = Cpt(EpicsSignal, "HGAP", kind="normal")
    vertical_gap = Cpt(EpicsSignal, "VGAP", kind="normal")
    shape = Cpt(EpicsSignal, "SHAPE", string=True, kind="normal")

    def set(self, value: str | tuple[float, float], **kwargs: Any) -> Status:
        h_gap, v_gap = BEAM_SHAPES[value] if isinstance(value, str) else value
        self.shape.put(value if isinstance(value, str) else "custom")
        return self.horizontal_gap.set(h_gap) & self.vertical_gap.set(v_gap)


_MODE_CODES = {"open_circuit": 0, "constant_current": 1, "constant_voltage": 2, "rest": 3}


class EpicsPotentiostat(Device):
    """A potentiostat IOC with a step-table sequencer (same names as the simulated one).

    Like the simulated one it can be monitored whole (``bps.monitor(potentiostat)``): every
    new voltage reading from the IOC is a reading of the device."""

    SUB_READING = "reading"
    _default_sub = SUB_READING

    mode = Cpt(EpicsSignalRO, "MODE_RBV", string=True, kind="normal")
    voltage = Cpt(EpicsSignalRO, "VOLTAGE_RBV", kind="hinted")
    current = Cpt(EpicsSignalRO, "CURRENT_RBV", kind="hinted")
    capacity = Cpt(EpicsSignalRO, "CAPACITY_RBV", kind="hinted")
    step = Cpt(EpicsSignalRO, "STEP_RBV", kind="normal")
    step_time = Cpt(EpicsSignalRO, "STEP_TIME_RBV", kind="normal")
    current_setpoint = Cpt(EpicsSignalRO, "CURRENT_SP_RBV", kind="config")
    voltage_setpoint = Cpt(EpicsSignalRO, "VOLTAGE_SP_RBV", kind="config")
    v_min_limit = Cpt(EpicsSignalRO, "VMIN", kind="config")
    v_max_limit = Cpt(EpicsSignalRO, "VMAX", kind="config")
    current_limit = Cpt(EpicsSignalRO, "IMAX", kind="config")

    table_mode = Cpt(EpicsSignal, "TABLE:MODE", kind="omitted")
    table_setpoint = Cpt(EpicsSignal, "TABLE:SETPOINT", kind="omitted")
    table_limit = Cpt(EpicsSignal, "TABLE:LIMIT", kind="omitted")
    table_duration = Cpt(EpicsSignal, "TABLE:DURATION", kind="omitted")
    start_sequence = Cpt(EpicsSignal, "START", kind="omitted")
    open_circuit = Cpt(EpicsSignal, "OPEN_CIRCUIT", kind="omitted")
    running = Cpt(EpicsSignalRO, "RUNNING_RBV", kind="omitted")

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.voltage.subscribe(self._new_reading, run=False)

    def _new_reading(self, *, timestamp: float | None = None, **kwargs: Any) -> None:
        self._run_subs(sub_type=self.SUB_READING, timestamp=timestamp)

    @property
    def limits(self) -> PotentiostatLimits:
        return PotentiostatLimits(self.v_min_limit.get(), self.v_max_limit.get(), self.current_limit.get())

    def set(self, value: CyclingProtocol, **kwargs: Any) -> Status:
        protocol = value if isinstance(value, CyclingProtocol) else CyclingProtocol((value,))
        protocol.validate(self.limits)  # raises before any PV is written
        steps = protocol.all_steps
        modes = [_MODE_CODES[{CurrentStep: "constant_current", VoltageStep: "constant_voltage"}.get(type(s), "rest")]
                 for s in steps]  # fmt: skip
        setpoints = [getattr(s, "current_a", getattr(s, "voltage_v", 0.0)) for s in steps]
        step_limits = [getattr(s, "v_limit", getattr(s, "cutoff_current_a", 0.0)) for s in steps]
        durations = [min(s.max_duration_s, 1e9) for s in steps]
        for signal, table in zip(
            (self.table_mode, self.table_setpoint, self.table_limit, self.table_duration),
            (modes, setpoints, step_limits, durations),
            strict=True,
        ):
            signal.put(table)
        self.start_sequence.put(1)
        return SubscriptionStatus(self.running, lambda old_value, value, **_: old_value == 1 and value == 0)

    def stop(self, *, success: bool = False) -> None:
        self.open_circuit.put(1)


_NUMPY_TYPES = {"Int8": "i1", "UInt8": "u1", "Int16": "<i2", "UInt16": "<u2", "Int32": "<i4", "UInt32": "<u4",
                "Int64": "<i8", "UInt64": "<u8", "Float32": "<f4", "Float64": "<f8"}  # fmt: skip
_ANSWER_S = 10.0  # for the IOC to start or stop an acquisition
try:
    from epics.ca import ChannelAccessGetFailure  # pyepics' control layer
except ImportError:  # caproto's
    ChannelAccessGetFailure = TimeoutError
_CA_LOST = (TimeoutError, DisconnectedError, ChannelAccessGetFailure)  # what a get from a gone IOC raises
_POLL_S = 0.02
_SET_TIMEOUT_S = 10.0


def _table(signal_class: type, suffix: str, **kwargs: Any) -> Cpt:
    """A setting written with put completion (the IOC has taken it when the put returns)."""
    return Cpt(signal_class, suffix, put_complete=True, kind="omitted", **kwargs)


class EpicsAreaDetector(StreamingDetector):
    """An areaDetector (``{prefix}cam1:``) flown as the simulated detectors are.

    ``prepare`` writes the acquisition to the IOC: internal triggers (``TimeTriggered``) or
    external ones from the position compare (``PositionTriggered``: ``trig:AXIS`` is the axis'
    motor record, ``trig:POSITIONS`` the positions), and the indices every frame is to carry
    (``attr:``); ``kickoff`` starts it (``Acquire``) and fails with the IOC's
    ``StatusMessage_RBV`` if the IOC refuses; ``complete`` waits until the detector is done and
    fails if it made fewer frames than asked (a missed trigger, an abort), or if the IOC goes
    away or makes no frame for ``stall_timeout_s``. ``collect`` describes the frames, as the
    simulated detectors do, in the recorder's run file (``sink`` follows the RunEngine's runs).
    """

    acquire_time = Cpt(EpicsSignal, "cam1:AcquireTime", put_complete=True, kind="config")
    acquire_period = _table(EpicsSignal, "cam1:AcquirePeriod")
    num_images = _table(EpicsSignal, "cam1:NumImages")
    image_mode = _table(EpicsSignal, "cam1:ImageMode", string=True)
    trigger_mode = _table(EpicsSignal, "cam1:TriggerMode", string=True)
    acquire = Cpt(EpicsSignal, "cam1:Acquire", kind="omitted")
    acquiring = Cpt(EpicsSignalRO, "cam1:Acquire_RBV", kind="omitted")
    state = Cpt(EpicsSignalRO, "cam1:DetectorState_RBV", string=True, kind="omitted")
    message = Cpt(EpicsSignalRO, "cam1:StatusMessage_RBV", string=True, kind="omitted")
    images_done = Cpt(EpicsSignalRO, "cam1:NumImagesCounter_RBV", kind="omitted")
    array_counter = Cpt(EpicsSignalRO, "cam1:ArrayCounter_RBV", kind="omitted")
    size_x = Cpt(EpicsSignalRO, "cam1:ArraySizeX_RBV", kind="config")
    size_y = Cpt(EpicsSignalRO, "cam1:ArraySizeY_RBV", kind="config")
    data_type = Cpt(EpicsSignalRO, "cam1:DataType_RBV", string=True, kind="config")
    max_rate = Cpt(EpicsSignalRO, "cam1:MaxFrameRate_RBV", kind="config")
    trigger_axis = _table(EpicsSignal, "trig:AXIS", string=True)
    trigger_positions = _table(EpicsSignal, "trig:POSITIONS")
    index_names = _table(EpicsSignal, "attr:INDEX_NAMES", string=True)
    index_values = _table(EpicsSignal, "attr:INDEX_VALUES")
    counter = _table(EpicsSignal, "attr:COUNTER", string=True)
    counter_values = _table(EpicsSignal, "attr:COUNTER_VALUES")

    def __init__(self, prefix: str = "", *, name: str, sink: FrameSink, stall_timeout_s: float = 10.0,
                 external_trigger_mode: str = "External", **kwargs: Any) -> None:  # fmt: skip
        super().__init__(prefix, name=name, sink=sink, clock=WALL_CLOCK, **kwargs)
        self.stall_timeout_s = stall_timeout_s
        self.external_trigger_mode = external_trigger_mode  # the driver's name for it (a Pilatus': "Ext. Trigger")
        self._prepared: Acquisition | None = None

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.size_y.get()), int(self.size_x.get())

    @property
    def frame_dtype(self) -> str:
        return _NUMPY_TYPES[self.data_type.get()]

    @property
    def max_frame_rate_hz(self) -> float:
        return float(self.max_rate.get())

    def prepare(self, value: Acquisition) -> Status:
        """The acquisition's settings, on the IOC when the status is done."""
        super().prepare(value)  # checks it, and counts it if armed again in the run
        indices = {**value.indices, **({"attempt": self._attempt} if self._attempt else {})}
        settings: list[tuple[EpicsSignal, Any]] = [
            (self.acquire_time, value.exposure_s), (self.image_mode, "Multiple"), (self.num_images, value.n_frames),
            (self.index_names, ",".join(indices)), (self.index_values, list(indices.values()) or [0]),
            (self.counter, value.counter)]  # fmt: skip
        if isinstance(value, TimeTriggered):
            settings += [(self.trigger_mode, "Internal"), (self.acquire_period, value.period_s or value.exposure_s),
                         (self.counter_values, [0])]  # fmt: skip
        else:
            settings += [(self.trigger_mode, self.external_trigger_mode), (self.trigger_axis, value.axis.prefix),
                         (self.trigger_positions, list(value.positions)),
                         (self.counter_values, list(value.counter_values))]  # fmt: skip
        self._prepared = value
        status = Status(self)
        status.set_finished()
        for signal, setting in settings:
            status = status & signal.set(setting, timeout=_SET_TIMEOUT_S)
        return status

    def kickoff(self) -> Status:
        """Start the prepared acquisition; the status fails if the IOC refuses it or does not answer.

        ``Acquire`` is put without completion: areaDetector's is a busy record, whose put
        completes when the acquisition ends, after the move a position-triggered one waits for."""
        if self._prepared is None:
            raise DeviceError(f"{self.name}: kickoff before prepare")
        self._follow_run()
        status = Status(self)

        def start() -> None:
            error = None
            try:
                self._abort_if_acquiring()  # an acquisition left armed (a failed plan) would take this one's triggers
                before = self.state.get(use_monitor=False), self.message.get(use_monitor=False)
                counted = self.array_counter.get(use_monitor=False)
                self.acquire.put(1, use_complete=False)
                deadline = WALL_CLOCK.time() + _ANSWER_S
                while True:
                    state, message = self.state.get(use_monitor=False), self.message.get(use_monitor=False)
                    started = self.acquiring.get(use_monitor=False) == 1
                    if started or self.array_counter.get(use_monitor=False) > counted:  # or already done
                        break
                    if state == "Error" and (state, message) != before:
                        error = f"the IOC refused the acquisition: {message}"
                        break
                    if WALL_CLOCK.time() > deadline:
                        error = f"no answer to Acquire within {_ANSWER_S} s"
                        break
                    WALL_CLOCK.sleep(_POLL_S)
            except _CA_LOST as lost:
                error = f"the IOC does not answer ({lost})"
            except Exception as unexpected:  # the status must end whatever happened
                error = f"{type(unexpected).__name__}: {unexpected}"
            finally:
                if error is None:
                    status.set_finished()
                else:
                    status.set_exception(DeviceError(f"{self.name}: {error}"))

        threading.Thread(target=start, name=f"{self.name} kickoff", daemon=True).start()
        return status

    def complete(self) -> Status:
        """Done when the IOC is (``Acquire_RBV`` 0); fails on fewer frames than prepared (the
        IOC's ``StatusMessage_RBV`` says why), a lost IOC, or no frame for ``stall_timeout_s``
        (then the acquisition is aborted)."""
        acquisition, self._prepared = self._prepared, None
        if acquisition is None:
            raise DeviceError(f"{self.name}: complete before prepare and kickoff")
        status = Status(self)
        period_s = acquisition.period_s or acquisition.exposure_s if isinstance(acquisition, TimeTriggered) else \
            acquisition.exposure_s  # fmt: skip
        patience_s = max(self.stall_timeout_s, 2 * period_s)

        monitored = {"frames": 0}  # the counter's updates: what the IOC said last, if it goes

        def on_frames(*, value: int, **_: Any) -> None:
            monitored["frames"] = max(monitored["frames"], int(value))

        def follow() -> None:
            made, error, last_progress = 0, None, WALL_CLOCK.time()
            try:
                while True:
                    try:
                        done = self.acquiring.get(use_monitor=False) == 0
                        now_made = int(self.images_done.get(use_monitor=False))
                    except _CA_LOST:
                        error, made = "the IOC was lost mid-acquisition", max(made, monitored["frames"])
                        break
                    if now_made != made:
                        made, last_progress = now_made, WALL_CLOCK.time()
                    if done:
                        if made < acquisition.n_frames:
                            error = self.message.get(use_monitor=False)  # the IOC's reason
                        break
                    if WALL_CLOCK.time() - last_progress > patience_s:
                        self.acquire.put(0, use_complete=False)
                        error = f"no frame for {patience_s} s: aborted"
                        break
                    WALL_CLOCK.sleep(_POLL_S)
            except Exception as unexpected:  # the status must end whatever happened
                error = f"{type(unexpected).__name__}: {unexpected}"
            finally:
                self.images_done.clear_sub(on_frames)
                self._n_frames += made
                self.num_captured.put(self._n_frames)
                if error is None:
                    status.set_finished()
                else:
                    status.set_exception(DeviceError(f"{self.name}: {error}; {made} of {acquisition.n_frames} frames "
                                                     "made"))  # fmt: skip

        self.images_done.subscribe(on_frames, run=False)
        threading.Thread(target=follow, name=f"{self.name} complete", daemon=True).start()
        return status

    def _abort_if_acquiring(self) -> None:
        """Abort an acquisition under way and wait until the IOC says it ended."""
        if self.acquiring.get(use_monitor=False) != 1:
            return
        self.acquire.put(0, use_complete=False)
        deadline = WALL_CLOCK.time() + _ANSWER_S
        while self.acquiring.get(use_monitor=False) == 1:
            if WALL_CLOCK.time() > deadline:
                raise DeviceError(f"{self.name}: the acquisition under way did not stop within {_ANSWER_S} s")
            WALL_CLOCK.sleep(_POLL_S)

    def describe_collect(self) -> dict[str, dict[str, Any]]:
        described = super().describe_collect()
        described[self.image_key]["source"] = f"pva://{self.prefix}Pva1:Image"
        return described

    def unstage(self) -> list[object]:
        """Abort an acquisition left under way (a plan that failed between kickoff and complete:
        the RunEngine stops only what was set, not flyers), so it takes no later triggers."""
        if self.connected:
            with contextlib.suppress(*_CA_LOST, DeviceError):
                self._abort_if_acquiring()
        return super().unstage()

    def stop(self, *, success: bool = False) -> None:
        """Abort an acquisition under way."""
        if self.connected:
            self.acquire.put(0, use_complete=False)
