"""A motor record, simulated: the fields ophyd's ``EpicsMotor`` uses, moving like ``SimAxis``.

:class:`AxisIOC` is one axis: ``{prefix}`` is the record (``.VAL`` the target), with ``.RBV``,
``.DMOV``, ``.MOVN``, ``.VELO``, ``.VMAX``, ``.ACCL``, ``.HLM``, ``.LLM``, ``.EGU``, ``.STOP``,
``.LVIO``, ``.HLS``, ``.LLS``, ``.TDIR``, ... A put to ``.VAL`` within ``[LLM, HLM]`` starts
a trapezoidal move at ``.VELO`` with ``.ACCL`` seconds of ramp (:class:`~devices.motion.Trajectory`,
the same profile as the simulated axis); the readback follows the profile on the wall clock at
``tick_hz``. As the motor record does:

- a target outside the soft limits moves nothing: the limits are ``.VAL``'s control limits, so
  ophyd refuses it before a put and the IOC refuses a put from elsewhere (``.VAL`` keeps its
  old value; ``.LVIO`` becomes 1 if the limits changed since the last tick);
- ``.STOP`` stops at once where the axis is, ``.DMOV`` 1;
- a stall (set by the fault PV ``{prefix}:SimStallAt``, a position in egu; NaN never) ends the
  move there with ``.DMOV`` 1 and ``.RBV`` in a MAJOR ``STATE`` alarm, which ophyd turns into a
  failed move.
"""

from __future__ import annotations

import contextlib
import math
import time

from caproto import AlarmSeverity, AlarmStatus
from caproto.server import PVGroup, pvproperty
from caproto.server.records import MotorFields

from devices.motion import Trajectory

__all__ = ["AxisIOC"]


class AxisIOC(PVGroup):
    """One simulated motor record (see the module docstring).

    Parameters
    ----------
    prefix : str
        The record's name (ophyd's ``EpicsMotor`` prefix).
    limits : (float, float)
        Soft limits ``LLM``, ``HLM``, egu.
    velocity, max_velocity : float
        ``VELO`` and ``VMAX``, egu/s.
    acceleration_s : float
        ``ACCL``: seconds to full speed.
    egu : str
    tick_hz : float
        Readback updates per second while moving.
    """

    motor = pvproperty(value=0.0, name="", record="motor", precision=4)
    stall_at = pvproperty(value=math.nan, name=":SimStallAt", doc="Simulated fault: stall at this position (egu)")

    def __init__(
        self,
        prefix: str,
        *,
        limits: tuple[float, float] = (-100.0, 100.0),
        velocity: float = 1.0,
        max_velocity: float = 10.0,
        acceleration_s: float = 0.1,
        egu: str = "mm",
        tick_hz: float = 50.0,
        **kwargs,
    ) -> None:
        super().__init__(prefix, **kwargs)
        if not limits[0] < limits[1] or not 0 < velocity <= max_velocity or acceleration_s < 0 or tick_hz <= 0:
            raise ValueError(f"{prefix}: inconsistent axis settings {limits=}, {velocity=}, {max_velocity=}, "
                             f"{acceleration_s=}, {tick_hz=}")  # fmt: skip
        self.settings = {"limits": limits, "velocity": velocity, "max_velocity": max_velocity,
                         "acceleration_s": acceleration_s, "egu": egu}  # fmt: skip
        self.tick_s = 1.0 / tick_hz
        self.trajectory: Trajectory | None = None  # the move under way
        self.last_trajectory: Trajectory | None = None  # the last move started (a detector's triggers read it)
        self.ended_at = math.inf  # when the last move ended, wall clock s (a stall or stop ends it early)
        self.checked_until = 0.0  # the last tick's time: what the axis did until then is known
        self._travelled_to = 0.0  # where the last tick saw the axis (a stall is looked for beyond it)

    @property
    def position(self) -> float:
        """Where the axis is now, egu (between readback ticks too)."""
        moving = self.trajectory
        return moving.position_at(time.time()) if moving is not None else self.fields.user_readback_value.value

    @property
    def fields(self) -> MotorFields:
        return self.motor.field_inst

    @motor.startup
    async def motor(self, instance, async_lib) -> None:
        """Set the record up, then follow each move on the wall clock."""
        fields, settings = self.fields, self.settings
        low, high = settings["limits"]
        start = min(max(0.0, low), high)
        for field, value in ((fields.user_low_limit, low), (fields.user_high_limit, high),
                             (fields.velocity, settings["velocity"]), (fields.max_velocity, settings["max_velocity"]),
                             (fields.seconds_to_velocity, settings["acceleration_s"]),
                             (fields.engineering_units, settings["egu"]), (fields.user_readback_value, start),
                             (fields.dial_readback_value, start), (fields.done_moving_to_value, 1),
                             (fields.motor_is_moving, 0), (fields.limit_violation, 0)):  # fmt: skip
            await field.write(value)
        await instance.write(start, verify_value=False)
        await self._publish_limits()
        while True:
            await async_lib.library.sleep(self.tick_s)
            await self._tick()

    @motor.putter
    async def motor(self, instance, value: float) -> float:
        """A new target: refused outside the soft limits, else the move starts now."""
        fields = self.fields
        low, high = fields.user_low_limit.value, fields.user_high_limit.value
        if not (math.isfinite(value) and low <= value <= high):
            await fields.limit_violation.write(1)
            return instance.value  # the motor record keeps its old target
        await fields.limit_violation.write(0)
        now = time.time()
        moving = self.trajectory
        position = moving.position_at(now) if moving is not None else fields.user_readback_value.value
        if fields.stop.value:  # a stop the tick has not seen yet was for what moved before this
            await fields.stop.write(0)
        speed = fields.velocity.value
        if fields.max_velocity.value > 0:  # VMAX 0: no maximum, as in the motor record
            speed = min(speed, fields.max_velocity.value)
        if speed <= 0:
            await fields.limit_violation.write(1)
            return instance.value
        self._travelled_to = position
        self.trajectory = Trajectory(now, position, float(value), speed, fields.seconds_to_velocity.value)
        self.last_trajectory, self.ended_at = self.trajectory, math.inf
        await fields.direction_of_travel.write(1 if value >= position else 0)
        await fields.motor_is_moving.write(1)
        await fields.done_moving_to_value.write(0)
        await self._alarm(stalled=False)  # a new move clears a stall's
        return value

    async def _tick(self) -> None:
        fields = self.fields
        await self._publish_limits()
        trajectory = self.trajectory
        if trajectory is None:
            if fields.stop.value:
                await fields.stop.write(0)
            return
        now = time.time()
        position = trajectory.position_at(now)
        stall, direction = self.stall_at.value, trajectory.direction
        # the stall position lies in what the axis travelled since the last tick (not where it set off)
        stalled = math.isfinite(stall) and 0 < direction * (stall - self._travelled_to) <= direction * (
            position - self._travelled_to)  # fmt: skip
        if stalled:
            position = stall
            with contextlib.suppress(ValueError):  # when it got there, if it was cruising
                now = trajectory.time_at(stall)
        self._travelled_to = position
        if fields.stop.value or stalled:
            await fields.stop.write(0)
            await self._arrive(position, stalled=stalled, at=now)
            if not stalled:  # a stop leaves the target where the axis stopped
                await self.motor.write(position, verify_value=False)
        elif now >= trajectory.start_time + trajectory.duration_s:
            await self._arrive(trajectory.stop, stalled=False, at=trajectory.start_time + trajectory.duration_s)
        else:
            await fields.user_readback_value.write(position)
            await fields.dial_readback_value.write(position)
        self.checked_until = now

    async def _arrive(self, position: float, *, stalled: bool, at: float) -> None:
        fields = self.fields
        self.trajectory, self.ended_at = None, at
        await fields.user_readback_value.write(position)
        await fields.dial_readback_value.write(position)
        await fields.motor_is_moving.write(0)
        await self._alarm(stalled=stalled)  # before DMOV: ophyd reads it when the move ends
        await fields.done_moving_to_value.write(1)

    async def _alarm(self, *, stalled: bool) -> None:
        """The record's alarm (``.RBV``'s and every field's: they share it), written only when it
        changes (a write posts every field again, with the values they hold at that moment)."""
        status, severity = (AlarmStatus.STATE, AlarmSeverity.MAJOR_ALARM) if stalled else (
            AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM)  # fmt: skip
        readback = self.fields.user_readback_value
        if (readback.alarm.status, readback.alarm.severity) != (status, severity):
            await readback.write(readback.value, status=status, severity=severity)

    async def _publish_limits(self) -> None:
        """``HLM``/``LLM`` as ``.VAL``'s control limits: what ophyd checks a target against."""
        fields = self.fields
        low, high = fields.user_low_limit.value, fields.user_high_limit.value
        if (self.motor.lower_ctrl_limit, self.motor.upper_ctrl_limit) != (low, high):
            await self.motor.write_metadata(lower_ctrl_limit=low, upper_ctrl_limit=high)
