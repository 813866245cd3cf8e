"""A simulated potentiostat cycling a simulated cell on the experiment clock.

:class:`SimPotentiostat` runs a :class:`~devices.protocol.CyclingProtocol` on a
:class:`~simulators.battery.Battery`: ``status = yield from bps.abs_set(potentiostat, protocol)``
starts it and ``status`` finishes when its last step ends. The cell evolves as the clock
advances (every move and exposure of the other devices advances a simulated clock), sampled
every ``sample_interval_s``: each sample updates the readbacks (``voltage``, ``current``,
``capacity``, ``step``, ``step_time``, ``mode``) and notifies subscribers, so
``bps.monitor(potentiostat)`` records them as a monitor stream of the run.

Safety, the rules a beamline scientist relies on:

- a protocol or step outside :class:`~devices.protocol.PotentiostatLimits` is refused with
  :class:`~streaming.errors.LimitError` before anything changes;
- every constant-current step stops exactly at its voltage limit, which lies inside the
  window, so the terminal voltage never leaves ``[v_min, v_max]``;
- ``stop()`` (called by the RunEngine when a plan ends, fails, is stopped, aborted or paused)
  puts the cell at open circuit at once; after a pause, ``resume()`` continues the protocol
  where it was.
"""

from __future__ import annotations

import math
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device
from ophyd.signal import InternalSignal
from ophyd.status import Status

from simulators.battery import Battery
from simulators.clock import SimulatedClock
from streaming.errors import DeviceError

from .motion import Clock
from .protocol import CurrentStep, CyclingProtocol, PotentiostatLimits, RestStep, Step, VoltageStep

__all__ = ["MODES", "SimPotentiostat"]

MODES = ("open_circuit", "constant_current", "constant_voltage", "rest")
_MODE_OF = {CurrentStep: "constant_current", VoltageStep: "constant_voltage", RestStep: "rest"}
_EPS_S = 1e-9


class SimPotentiostat(Device):
    """Potentiostat/galvanostat with a simulated cell.

    Parameters
    ----------
    prefix, name : str
    clock : SimulatedClock or WallClock
        A simulated clock drives the cell as it advances; with the wall clock the cell
        catches up whenever it is read.
    battery : Battery
        The cell (:class:`~simulators.battery.EquivalentCircuitBattery` or PyBaMM).
    limits : PotentiostatLimits, optional
        Default: the cell's own voltage window and a 2C compliance.
    sample_interval_s : float
        Time between recorded readings, s.
    """

    SUB_READING = "reading"
    _default_sub = SUB_READING

    mode = Cpt(InternalSignal, value="open_circuit", kind="normal")
    voltage = Cpt(InternalSignal, value=0.0, kind="hinted")
    current = Cpt(InternalSignal, value=0.0, kind="hinted")
    capacity = Cpt(InternalSignal, value=0.0, kind="hinted")
    step = Cpt(InternalSignal, value=-1, kind="normal")
    step_time = Cpt(InternalSignal, value=0.0, kind="normal")
    current_setpoint = Cpt(InternalSignal, value=0.0, kind="config")
    voltage_setpoint = Cpt(InternalSignal, value=0.0, kind="config")
    v_min_limit = Cpt(InternalSignal, value=0.0, kind="config")
    v_max_limit = Cpt(InternalSignal, value=0.0, kind="config")
    current_limit = Cpt(InternalSignal, value=0.0, kind="config")

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str = "potentiostat",
        clock: Clock,
        battery: Battery,
        limits: PotentiostatLimits | None = None,
        sample_interval_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, name=name, **kwargs)
        if not (math.isfinite(sample_interval_s) and sample_interval_s > 0):
            raise ValueError(f"sample_interval_s must be > 0, got {sample_interval_s}")
        self.clock = clock
        self.battery = battery
        self.limits = limits or PotentiostatLimits(battery.v_min, battery.v_max, 2.0 * battery.nominal_capacity_ah)
        if self.limits.v_min < battery.v_min or self.limits.v_max > battery.v_max:
            raise DeviceError(
                f"{name}: limits [{self.limits.v_min}, {self.limits.v_max}] V reach outside the cell's "
                f"[{battery.v_min}, {battery.v_max}] V"
            )
        self.sample_interval_s = float(sample_interval_s)
        for signal, value in (
            (self.v_min_limit, self.limits.v_min),
            (self.v_max_limit, self.limits.v_max),
            (self.current_limit, self.limits.max_current_a),
        ):
            signal.put(value, internal=True)
        self._time = clock.time()
        self._next_sample = self._time + self.sample_interval_s
        self._steps: tuple[Step, ...] = ()
        self._index = 0
        self._elapsed_s = 0.0
        self._status: Status | None = None
        self._suspended: tuple[tuple[Step, ...], int, float, Status | None] | None = None
        self._charge0_ah = battery.state.charge_ah
        self._busy = False
        self._sample()
        if isinstance(clock, SimulatedClock):
            clock.add_listener(self._catch_up)

    # -- state ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._index < len(self._steps)

    def cell_soc(self) -> float:
        """The simulated cell's state of charge now (the simulators' coupling, not a PV)."""
        self._catch_up(self.clock.time())
        return float(self.battery.state.soc)

    def read(self) -> dict[str, Any]:
        self._catch_up(self.clock.time())
        return super().read()

    # -- control ----------------------------------------------------------------------------

    def set(self, value: CyclingProtocol | Step, **kwargs: Any) -> Status:
        """Run a protocol (or a single step); the status finishes when it ends.

        Raises :class:`~streaming.errors.LimitError` if any step is outside the limits, and
        :class:`DeviceError` if a protocol is already running: in both cases nothing changes.
        """
        protocol = value if isinstance(value, CyclingProtocol) else CyclingProtocol((value,), name=str(value))
        protocol.validate(self.limits)
        self._catch_up(self.clock.time())
        if self.running:
            raise DeviceError(f"{self.name}: a protocol is running; stop it first")
        self._suspended = None
        self._charge0_ah = self.battery.state.charge_ah
        self._start(protocol.all_steps, 0, 0.0, Status(self))
        return self._status

    def stop(self, *, success: bool = False) -> None:
        """Open circuit now; a running protocol is suspended (``resume`` continues it)."""
        self._catch_up(self.clock.time())
        if self.running:
            self._suspended = (self._steps, self._index, self._elapsed_s, self._status)
        self._steps, self._index, self._status = (), 0, None
        self.battery.rest(0.0)  # the circuit opens now: no current from here on
        self._sample()

    def pause(self) -> None:
        """The RunEngine pauses: ``stop`` has already opened the circuit."""

    def resume(self) -> None:
        """Continue a protocol suspended by a pause."""
        if self._suspended is not None and not self.running:
            self._catch_up(self.clock.time())
            steps, index, elapsed, status = self._suspended
            self._suspended = None
            self._start(steps, index, elapsed, status)

    def _start(self, steps: tuple[Step, ...], index: int, elapsed_s: float, status: Status | None) -> None:
        self._steps, self._index, self._elapsed_s, self._status = steps, index, elapsed_s, status
        self._apply_current(steps[index])
        self._sample()

    def _apply_current(self, step: Step) -> None:
        """Switch a current step on now, so the first reading is under load; a cell already
        at the step's voltage limit gets no current (the step then ends at once)."""
        if isinstance(step, CurrentStep):
            if self.battery.constant_current(step.current_a, 0.0, v_limit=step.v_limit).termination is not None:
                self.battery.rest(0.0)

    # -- the cell on the clock ---------------------------------------------------------------

    def _catch_up(self, now: float) -> None:
        """Run the cell from its last time to ``now``, sampling on the way."""
        if self._busy:  # a subscriber reading inside a sample
            return
        self._busy = True
        try:
            while self._time < now - _EPS_S:
                dt = min(now, self._next_sample) - self._time
                step_ended = False
                if not self.running:
                    duration = self.battery.rest(dt).duration_s
                else:
                    step = self._steps[self._index]
                    dt = min(dt, step.max_duration_s - self._elapsed_s)
                    result = self._run_step(step, dt)
                    duration = result.duration_s
                    if result.termination is not None and duration == 0:
                        self.battery.rest(0.0)  # at the limit already: no current was passed
                    self._elapsed_s += duration
                    step_ended = result.termination is not None or self._elapsed_s >= step.max_duration_s - _EPS_S
                self._time += duration
                if step_ended:
                    self._next_step()
                if self._time >= self._next_sample - _EPS_S:
                    self._next_sample += self.sample_interval_s
                    self._sample()
        finally:
            self._busy = False

    def _run_step(self, step: Step, dt: float):
        if isinstance(step, CurrentStep):
            return self.battery.constant_current(step.current_a, dt, v_limit=step.v_limit)
        if isinstance(step, VoltageStep):
            return self.battery.constant_voltage(step.voltage_v, dt, current_cutoff_a=step.cutoff_current_a)
        return self.battery.rest(dt)

    def _next_step(self) -> None:
        self._index += 1
        self._elapsed_s = 0.0
        if not self.running:
            status, self._steps, self._index, self._status = self._status, (), 0, None
            self.battery.rest(0.0)
            self._sample()
            if status is not None and not status.done:
                status.set_finished()
        else:
            self._apply_current(self._steps[self._index])
            self._sample()

    def _sample(self) -> None:
        """Update the readbacks at the cell's time and notify subscribers (monitors)."""
        state = self.battery.state
        step = self._steps[self._index] if self.running else None
        mode = _MODE_OF[type(step)] if step is not None else "open_circuit"
        t = self._time
        current = state.current_a if mode in ("constant_current", "constant_voltage") else 0.0
        values = (
            (self.mode, mode),
            (self.voltage, float(state.voltage_v)),
            (self.current, float(current)),
            (self.capacity, (state.charge_ah - self._charge0_ah) * 1e3),
            (self.step, self._index if step is not None else -1),
            (self.step_time, self._elapsed_s),
            (self.current_setpoint, step.current_a if isinstance(step, CurrentStep) else 0.0),
            (self.voltage_setpoint, step.voltage_v if isinstance(step, VoltageStep) else 0.0),
        )
        for signal, value in values:
            signal.put(value, internal=True, timestamp=t)
        self._run_subs(sub_type=self.SUB_READING, timestamp=t)
