"""Simulated motion and beam devices on an experiment clock.

- :class:`SimAxis`: a motor axis (hexapod translation, rotation stage, vertical stage) with
  the component names of ophyd's ``EpicsMotor`` that plans use (``user_readback``,
  ``user_setpoint``, ``velocity``, ``acceleration``, limits, ``motor_egu``) plus
  ``max_velocity``. A move takes the trapezoidal time ``|Δ|/v + t_acc`` on the clock; the
  last move's :class:`Trajectory` tells a position-triggered detector when the axis
  crossed each trigger position (what a PandA/Zebra does at the beamline).
- :class:`SimShutter`: fast shutter, ``set("open")`` / ``set("closed")``.
- :class:`SimBeamShaper`: slits that make the pencil (XRD-CT), box (XCT) or fan/sheet (XCS)
  beam, ``set("pencil")`` etc., or explicit gaps.
- :class:`ClockDelay`: ``bps.mv(delay, 60)`` waits 60 s of experiment time (a simulated
  clock advances instantly; bluesky's own ``sleep`` would wait on the wall clock).

Limits are checked before anything moves: an out-of-range target or velocity raises
:class:`~streaming.errors.LimitError` and leaves the axis where it was.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from simulators.clock import WALL_CLOCK, SimulatedClock, WallClock
from streaming.errors import LimitError

__all__ = ["BEAM_SHAPES", "ClockDelay", "SimAxis", "SimBeamShaper", "SimShutter", "Trajectory", "finished_status"]

Clock = SimulatedClock | WallClock


def finished_status(obj: Any = None) -> Status:
    """A status that is already done (a simulated action completed on the clock)."""
    status = Status(obj)
    status.set_finished()
    return status


def _wait_on(clock: Clock, seconds: float, obj: Any) -> Status:
    """Wait ``seconds`` on ``clock``: at once on a simulated clock, in a thread on the wall clock
    (so the RunEngine stays responsive to pause and abort)."""
    if isinstance(clock, SimulatedClock):
        clock.sleep(seconds)
        return finished_status(obj)
    status = Status(obj)
    timer = threading.Timer(seconds, status.set_finished)
    timer.daemon = True
    timer.start()
    return status


@dataclass(frozen=True)
class Trajectory:
    """One trapezoidal move: accelerate for ``accel_s``, cruise, decelerate for ``accel_s``.

    Positions in the axis' units (``egu``), times in s on the experiment clock.
    """

    start_time: float
    start: float
    stop: float
    velocity: float  # cruise speed, egu/s (> 0)
    accel_s: float

    @property
    def direction(self) -> float:
        return 1.0 if self.stop >= self.start else -1.0

    @property
    def _ramp_distance(self) -> float:
        return 0.5 * self.velocity * self.accel_s

    @property
    def duration_s(self) -> float:
        distance = abs(self.stop - self.start)
        if distance >= 2 * self._ramp_distance:
            return distance / self.velocity + self.accel_s
        # a short move never reaches cruise speed: triangular profile
        return 2 * math.sqrt(distance * self.accel_s / self.velocity) if self.accel_s else distance / self.velocity

    def position_at(self, time_s: float) -> float:
        """Where the axis is at ``time_s`` (before the move: its start; after: its stop)."""
        elapsed = min(max(time_s - self.start_time, 0.0), self.duration_s)
        distance = abs(self.stop - self.start)
        if not self.accel_s:
            travelled = self.velocity * elapsed
        else:
            rate = self.velocity / self.accel_s  # egu/s², while speeding up or slowing down
            ramp_s = min(self.accel_s, self.duration_s / 2)  # a short move never cruises
            left_s = self.duration_s - elapsed
            if elapsed <= ramp_s:
                travelled = 0.5 * rate * elapsed**2
            elif left_s <= ramp_s:
                travelled = distance - 0.5 * rate * left_s**2
            else:
                travelled = self._ramp_distance + self.velocity * (elapsed - ramp_s)
        return self.start + self.direction * min(travelled, distance)

    def cruise_range(self) -> tuple[float, float]:
        """Positions (low, high) travelled at constant speed."""
        low, high = sorted((self.start, self.stop))
        return low + self._ramp_distance, high - self._ramp_distance

    def time_at(self, position: float) -> float:
        """When the axis passed ``position``; it must lie in the cruise range."""
        low, high = self.cruise_range()
        if not low - 1e-9 <= position <= high + 1e-9:
            raise ValueError(f"position {position} is outside the constant-speed part [{low}, {high}] of the move")
        travelled = abs(position - self.start)
        return self.start_time + self.accel_s + (travelled - self._ramp_distance) / self.velocity


class SimAxis(Device):
    """A simulated motor axis on an experiment clock.

    Parameters
    ----------
    prefix, name : str
        As for any ophyd device (the prefix is unused in simulation).
    clock : SimulatedClock or WallClock
    limits : (float, float)
        Soft travel limits, egu.
    velocity, max_velocity : float
        Default and largest allowed speed, egu/s.
    acceleration_s : float
        Time to reach full speed (EPICS ``ACCL``), s.
    egu : str
        Engineering units ("mm", "deg").
    """

    user_readback = Cpt(Signal, value=0.0, kind="hinted")
    user_setpoint = Cpt(Signal, value=0.0, kind="normal")
    velocity = Cpt(Signal, value=1.0, kind="config")
    max_velocity = Cpt(Signal, value=10.0, kind="config")
    acceleration = Cpt(Signal, value=0.1, kind="config")
    low_limit_travel = Cpt(Signal, value=-100.0, kind="config")
    high_limit_travel = Cpt(Signal, value=100.0, kind="config")
    motor_egu = Cpt(Signal, value="mm", kind="config")
    motor_is_moving = Cpt(Signal, value=0, kind="omitted")

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        clock: Clock = WALL_CLOCK,
        limits: tuple[float, float] = (-100.0, 100.0),
        velocity: float = 1.0,
        max_velocity: float = 10.0,
        acceleration_s: float = 0.1,
        egu: str = "mm",
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, name=name, **kwargs)
        if not limits[0] < limits[1]:
            raise ValueError(f"{name}: limits must be (low, high) with low < high, got {limits}")
        if not 0 < velocity <= max_velocity:
            raise ValueError(f"{name}: need 0 < velocity <= max_velocity, got {velocity}, {max_velocity}")
        if acceleration_s < 0:
            raise ValueError(f"{name}: acceleration_s must be >= 0, got {acceleration_s}")
        self.clock = clock
        self.low_limit_travel.put(float(limits[0]))
        self.high_limit_travel.put(float(limits[1]))
        self.velocity.put(float(velocity))
        self.max_velocity.put(float(max_velocity))
        self.acceleration.put(float(acceleration_s))
        self.motor_egu.put(egu)
        start = min(max(0.0, limits[0]), limits[1])
        self.user_readback.put(start, timestamp=clock.time())
        self.user_setpoint.put(start)
        self.last_trajectory: Trajectory | None = None

    @property
    def position(self) -> float:
        return float(self.user_readback.get())

    @property
    def limits(self) -> tuple[float, float]:
        return float(self.low_limit_travel.get()), float(self.high_limit_travel.get())

    @property
    def egu(self) -> str:
        return str(self.motor_egu.get())

    def check_value(self, value: float) -> None:
        """Raise :class:`LimitError` if ``value`` is not a finite position within the limits."""
        low, high = self.limits
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
            raise LimitError(f"{self.name}: target {value!r} {self.egu} is outside the limits [{low}, {high}]")

    def set(self, value: float, **kwargs: Any) -> Status:
        """Move to ``value`` at the current ``velocity``; the status finishes on arrival."""
        self.check_value(value)
        speed = float(self.velocity.get())
        if not 0 < speed <= float(self.max_velocity.get()):
            raise LimitError(f"{self.name}: velocity {speed} is outside (0, {self.max_velocity.get()}] {self.egu}/s")
        trajectory = Trajectory(self.clock.time(), self.position, float(value), speed, float(self.acceleration.get()))
        self.user_setpoint.put(float(value))
        self.motor_is_moving.put(1)
        self.last_trajectory = trajectory

        def arrived(status: Status | None = None) -> None:
            self.user_readback.put(float(value), timestamp=trajectory.start_time + trajectory.duration_s)
            self.motor_is_moving.put(0)

        status = _wait_on(self.clock, trajectory.duration_s, self)
        status.add_callback(arrived)
        return status

    def stop(self, *, success: bool = False) -> None:
        # moves complete within ``set`` on a simulated clock: nothing is left in motion
        self.motor_is_moving.put(0)


class SimShutter(Device):
    """Fast shutter: ``set("open")`` or ``set("closed")``; ``status`` reads back the state."""

    command = Cpt(Signal, value="closed", kind="omitted")
    status = Cpt(Signal, value="closed", kind="normal")

    def __init__(self, prefix: str = "", *, name: str, clock: Clock = WALL_CLOCK, actuation_s: float = 0.05, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.clock = clock
        self.actuation_s = actuation_s

    @property
    def is_open(self) -> bool:
        return self.status.get() == "open"

    def set(self, value: str, **kwargs: Any) -> Status:
        if value not in ("open", "closed"):
            raise ValueError(f"{self.name}: set 'open' or 'closed', got {value!r}")
        self.command.put(value)
        status = _wait_on(self.clock, self.actuation_s, self)
        status.add_callback(lambda _status=None: self.status.put(value, timestamp=self.clock.time()))
        return status


BEAM_SHAPES: dict[str, tuple[float, float]] = {
    "pencil": (0.020, 0.003),  # XRD-CT: 20 x 3 µm (horizontal, vertical gap, mm)
    "box": (20.0, 6.0),  # XCT: full field over the coin cell
    "fan": (25.0, 0.25),  # XCS: the 25 x 0.25 mm sheet
}


class SimBeamShaper(Device):
    """Slits shaping the beam: ``set("pencil" | "box" | "fan")`` or ``set((h_mm, v_mm))``.

    ``shape`` reads back the named shape (or "custom"); the gaps are what a detector's
    simulation uses (the XCS sheet thickness is the vertical gap).
    """

    horizontal_gap = Cpt(Signal, value=BEAM_SHAPES["box"][0], kind="normal")
    vertical_gap = Cpt(Signal, value=BEAM_SHAPES["box"][1], kind="normal")
    shape = Cpt(Signal, value="box", kind="normal")

    def __init__(self, prefix: str = "", *, name: str, clock: Clock = WALL_CLOCK, move_s: float = 0.5, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.clock = clock
        self.move_s = move_s

    def set(self, value: str | tuple[float, float], **kwargs: Any) -> Status:
        if isinstance(value, str):
            if value not in BEAM_SHAPES:
                raise ValueError(f"{self.name}: beam shape must be one of {sorted(BEAM_SHAPES)}, got {value!r}")
            (h_gap, v_gap), label = BEAM_SHAPES[value], value
        else:
            h_gap, v_gap = (float(v) for v in value)
            label = "custom"
            if not (0 < h_gap <= 50 and 0 < v_gap <= 50):
                raise LimitError(f"{self.name}: gaps must be within (0, 50] mm, got {value!r}")
        status = _wait_on(self.clock, self.move_s, self)

        def moved(_status: Status | None = None) -> None:
            now = self.clock.time()
            self.horizontal_gap.put(h_gap, timestamp=now)
            self.vertical_gap.put(v_gap, timestamp=now)
            self.shape.put(label, timestamp=now)

        status.add_callback(moved)
        return status


class ClockDelay(Device):
    """``bps.mv(delay, seconds)``: wait on the experiment clock (simulated or real)."""

    waited = Cpt(Signal, value=0.0, kind="omitted")

    def __init__(self, prefix: str = "", *, name: str, clock: Clock = WALL_CLOCK, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.clock = clock

    def set(self, seconds: float, **kwargs: Any) -> Status:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"{self.name}: a delay must be finite and >= 0 s, got {seconds}")
        self.waited.put(float(seconds))
        return _wait_on(self.clock, float(seconds), self)
