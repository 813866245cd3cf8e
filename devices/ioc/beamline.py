"""The end station's simple IOCs: shutter, beam shaper and potentiostat on Channel Access.

The stations (:mod:`.stations`) serve them under one prefix ``P``:

- ``Pshutter:CMD`` / ``Pshutter:STA``: the fast shutter (:class:`ShutterIOC`);
- ``Pbeam:HGAP`` / ``VGAP`` / ``SHAPE``: the slits (:class:`BeamShaperIOC`);
- ``Ppotentiostat:...``: the potentiostat (:class:`PotentiostatIOC`), the project's own
  :class:`~devices.potentiostat.SimPotentiostat` and cell model behind the PVs, its time running
  ``speed`` times the wall clock's.

The names are those of :mod:`devices.epics`, whose classes connect to them unchanged.
"""

from __future__ import annotations

import math
import time

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from devices.motion import BEAM_SHAPES
from devices.potentiostat import SimPotentiostat
from devices.protocol import CurrentStep, CyclingProtocol, PotentiostatLimits, RestStep, Step, VoltageStep
from simulators.battery import COIN_NMC811_LI, CellModel, EquivalentCircuitBattery
from simulators.clock import SimulatedClock
from streaming.errors import DeviceError, LimitError

__all__ = ["BeamShaperIOC", "PotentiostatIOC", "ShutterIOC", "steps_from_tables"]

TABLE_LENGTH = 256  # steps a protocol may have on the IOC
NO_LIMIT_S = 1e9  # a step without a time limit, in the duration table
MODE_CODES = {"open_circuit": 0, "constant_current": 1, "constant_voltage": 2, "rest": 3}


def steps_from_tables(modes, setpoints, limits, durations) -> tuple[Step, ...]:
    """A step table (the ``TABLE:*`` waveforms) as steps: mode 1 constant current (setpoint A,
    limit V), 2 constant voltage (setpoint V, limit: cut-off A), 3 rest; a duration of
    :data:`NO_LIMIT_S` or more is none. Raises ``ValueError`` on a table that makes no steps."""
    lengths = {len(modes), len(setpoints), len(limits), len(durations)}
    if len(lengths) != 1:
        raise ValueError(f"the step tables differ in length: {sorted(lengths)}")
    steps: list[Step] = []
    for mode, setpoint, limit, duration in zip(modes, setpoints, limits, durations, strict=True):
        longest = math.inf if duration >= NO_LIMIT_S else float(duration)
        if mode == MODE_CODES["constant_current"]:
            steps.append(CurrentStep(float(setpoint), float(limit), max_duration_s=longest))
        elif mode == MODE_CODES["constant_voltage"]:
            steps.append(VoltageStep(float(setpoint), float(limit), max_duration_s=longest))
        elif mode == MODE_CODES["rest"]:
            steps.append(RestStep(float(duration)))
        else:
            raise ValueError(f"step {len(steps)}: unknown mode code {mode}")
    if not steps:
        raise ValueError("the step table is empty")
    return tuple(steps)


class ShutterIOC(PVGroup):
    """``CMD`` ("open" / "closed"); ``STA`` follows ``actuation_s`` later."""

    command = pvproperty(value="closed", name="CMD")
    status = pvproperty(value="closed", name="STA", read_only=True)

    def __init__(self, prefix: str, *, actuation_s: float = 0.05, **kwargs) -> None:
        super().__init__(prefix, **kwargs)
        self.actuation_s = actuation_s

    @command.putter
    async def command(self, instance, value: str) -> str:
        if value not in ("open", "closed"):
            raise ValueError(f"{self.prefix}CMD: 'open' or 'closed', got {value!r}")
        await self.async_lib.library.sleep(self.actuation_s)
        await self.status.write(value)
        return value

    @command.startup
    async def command(self, instance, async_lib) -> None:
        self.async_lib = async_lib


class BeamShaperIOC(PVGroup):
    """Slit gaps (mm) and the name of the shape they make."""

    horizontal_gap = pvproperty(value=BEAM_SHAPES["box"][0], name="HGAP", precision=3, units="mm")
    vertical_gap = pvproperty(value=BEAM_SHAPES["box"][1], name="VGAP", precision=3, units="mm")
    shape = pvproperty(value="box", name="SHAPE")

    @horizontal_gap.putter
    async def horizontal_gap(self, instance, value: float) -> float:
        return _gap(value, f"{self.prefix}HGAP")

    @vertical_gap.putter
    async def vertical_gap(self, instance, value: float) -> float:
        return _gap(value, f"{self.prefix}VGAP")


def _gap(value: float, pv: str) -> float:
    if not 0 < value <= 50:
        raise ValueError(f"{pv}: a gap must be within (0, 50] mm, got {value}")
    return value


class PotentiostatIOC(PVGroup):
    """A potentiostat with a step-table sequencer, the simulated cell behind it.

    Puts to ``TABLE:MODE``, ``TABLE:SETPOINT``, ``TABLE:LIMIT`` and ``TABLE:DURATION`` load a
    protocol; a put to ``START`` checks every step against the limits (``VMIN``, ``VMAX``,
    ``IMAX``) and is refused (the put fails, ``ERROR_RBV`` says why) before anything changes;
    ``OPEN_CIRCUIT`` stops at once. The readbacks follow the cell every ``tick_s``.

    Parameters
    ----------
    prefix : str
    device : SimPotentiostat, optional
        The potentiostat and cell behind the PVs (default: a ``cell`` at 0 % charge, its limits
        the cell's voltages and twice its capacity in A, on a simulated clock).
    cell : CellModel
    speed : float
        Cell seconds per wall-clock second.
    """

    mode = pvproperty(value="open_circuit", name="MODE_RBV", read_only=True)
    voltage = pvproperty(value=0.0, name="VOLTAGE_RBV", read_only=True, precision=4, units="V")
    current = pvproperty(value=0.0, name="CURRENT_RBV", read_only=True, precision=6, units="A")
    capacity = pvproperty(value=0.0, name="CAPACITY_RBV", read_only=True, precision=4, units="mAh")
    step = pvproperty(value=-1, name="STEP_RBV", read_only=True)
    step_time = pvproperty(value=0.0, name="STEP_TIME_RBV", read_only=True, units="s")
    current_setpoint = pvproperty(value=0.0, name="CURRENT_SP_RBV", read_only=True, units="A")
    voltage_setpoint = pvproperty(value=0.0, name="VOLTAGE_SP_RBV", read_only=True, units="V")
    v_min = pvproperty(value=0.0, name="VMIN", read_only=True, units="V")
    v_max = pvproperty(value=0.0, name="VMAX", read_only=True, units="V")
    current_limit = pvproperty(value=0.0, name="IMAX", read_only=True, units="A")
    table_mode = pvproperty(value=[0], name="TABLE:MODE", max_length=TABLE_LENGTH)
    table_setpoint = pvproperty(value=[0.0], name="TABLE:SETPOINT", max_length=TABLE_LENGTH)
    table_limit = pvproperty(value=[0.0], name="TABLE:LIMIT", max_length=TABLE_LENGTH)
    table_duration = pvproperty(value=[0.0], name="TABLE:DURATION", max_length=TABLE_LENGTH)
    start = pvproperty(value=0, name="START")
    open_circuit = pvproperty(value=0, name="OPEN_CIRCUIT")
    running = pvproperty(value=0, name="RUNNING_RBV", read_only=True)
    error = pvproperty(value="", name="ERROR_RBV", read_only=True, dtype=ChannelType.CHAR, max_length=256)

    def __init__(self, prefix: str, *, device: SimPotentiostat | None = None, cell: CellModel = COIN_NMC811_LI,
                 speed: float = 1.0, tick_s: float = 0.1, **kwargs) -> None:  # fmt: skip
        super().__init__(prefix, **kwargs)
        if not speed > 0:
            raise ValueError(f"{prefix}: speed must be > 0, got {speed}")
        if device is None:
            battery = EquivalentCircuitBattery(cell, soc=0.0)
            limits = PotentiostatLimits(battery.v_min, battery.v_max, 2.0 * battery.nominal_capacity_ah)
            device = SimPotentiostat(name="potentiostat", clock=SimulatedClock(start=time.time()), battery=battery,
                                     limits=limits, sample_interval_s=1.0)  # fmt: skip
        if not isinstance(device.clock, SimulatedClock):
            raise ValueError(f"{prefix}: the IOC drives its potentiostat's clock: give it a SimulatedClock")
        self.device, self.speed, self.tick_s = device, speed, tick_s

    @start.putter
    async def start(self, instance, value: int) -> int:
        if not value:
            return 0
        try:
            steps = steps_from_tables(self.table_mode.value, self.table_setpoint.value, self.table_limit.value,
                                      self.table_duration.value)  # fmt: skip
            self.device.set(CyclingProtocol(steps, name="IOC step table"))  # checks every step first
        except (ValueError, LimitError, DeviceError) as refused:
            await self.error.write(str(refused)[:255])
            raise
        await self.error.write("")
        await self._publish()
        return 0

    @open_circuit.putter
    async def open_circuit(self, instance, value: int) -> int:
        if value:
            self.device.stop()
            await self._publish()
        return 0

    @mode.startup
    async def mode(self, instance, async_lib) -> None:
        limits = self.device.limits
        await self.v_min.write(limits.v_min)
        await self.v_max.write(limits.v_max)
        await self.current_limit.write(limits.max_current_a)
        wall = time.monotonic()
        while True:
            await self._publish()
            await async_lib.library.sleep(self.tick_s)
            now = time.monotonic()
            self.device.clock.advance((now - wall) * self.speed)
            wall = now

    async def _publish(self) -> None:
        for prop, key in ((self.mode, "mode"), (self.voltage, "voltage"), (self.current, "current"),
                          (self.capacity, "capacity"), (self.step, "step"), (self.step_time, "step_time"),
                          (self.current_setpoint, "current_setpoint"),
                          (self.voltage_setpoint, "voltage_setpoint")):  # fmt: skip
            value = getattr(self.device, key).get()
            if prop.value != value:
                await prop.write(value)
        running = int(self.device.running)
        if self.running.value != running:
            await self.running.write(running)
