"""EPICS classes beside the simulated ones: the same component names and ``set`` values,
so moving from simulation to the beamline changes how devices are constructed, not the plans.

- :class:`EpicsAxis`: ophyd's ``EpicsMotor`` plus ``max_velocity`` (``.VMAX``).
- :class:`EpicsShutter`: command and status PVs, ``set("open" | "closed")``.
- :class:`EpicsBeamShaper`: slit gap PVs, ``set("pencil" | "box" | "fan" | (h_mm, v_mm))``.
- :class:`EpicsPotentiostat`: readbacks and setpoints of a potentiostat IOC; ``set(protocol)``
  validates the protocol against the limits read from the IOC, refuses it with
  :class:`~streaming.errors.LimitError` before any PV is written, then loads the step table
  into waveform PVs and starts it; ``stop()`` writes open circuit.

The detectors stream through the vendors' own servers at the beamline (Pilatus/Eiger
stream interfaces, PCO's and HEXITEC's acquisition servers): the bridge from those to the
frame channel is not part of this module. Instantiating these classes needs an EPICS
control layer (``pip install pyepics`` or ``caproto``). :mod:`devices.ioc` serves every PV they
use from a simulated end station (``operando sim-ioc``): the tests run them against it.
"""

from __future__ import annotations

from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor, EpicsSignal, EpicsSignalRO
from ophyd.status import Status, SubscriptionStatus

from .motion import BEAM_SHAPES
from .protocol import CurrentStep, CyclingProtocol, PotentiostatLimits, VoltageStep

__all__ = ["EpicsAxis", "EpicsBeamShaper", "EpicsPotentiostat", "EpicsShutter"]


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
