"""The storage ring's current, which a beamline watches to suspend its scans while the beam is down.

- :class:`SimRingCurrent`: the ring current (mA) on the experiment clock, with beam dumps at
  chosen times: the value drops to 0 for each dump and comes back at its end
  (:meth:`~SimRingCurrent.beam_returns_at` tells when, for the simulation's stand-in for time
  passing while a suspended scan waits: a simulated clock moves only when slept on).

At a beamline the signal is the ring current PV (an ``EpicsSignalRO``) and time passes by
itself: see :func:`plans.suspenders.suspend_on_beam_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Signal

from simulators.clock import SimulatedClock

__all__ = ["SimRingCurrent"]


class SimRingCurrent(Device):
    """Ring current on the experiment clock, ``nominal_ma`` but during the beam dumps.

    Parameters
    ----------
    clock : SimulatedClock
    dumps : sequence of (float, float)
        ``(start, duration)`` of each beam dump, seconds since the epoch on ``clock`` and
        seconds.
    nominal_ma : float
        The current while the beam is up, mA.
    """

    current = Cpt(Signal, value=0.0, kind="hinted")

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        clock: SimulatedClock,
        dumps: Sequence[tuple[float, float]] = (),
        nominal_ma: float = 200.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, name=name, **kwargs)
        for start, duration in dumps:
            if not duration > 0:
                raise ValueError(f"{name}: a beam dump lasts > 0 s, got {duration} s at {start}")
        self.clock, self.dumps, self.nominal_ma = clock, tuple(dumps), nominal_ma
        self._update(clock.time())
        clock.add_listener(self._update)

    def beam_returns_at(self, time_s: float) -> float:
        """When the beam is back, if it is down at ``time_s`` (else ``time_s``)."""
        for start, duration in self.dumps:
            if start <= time_s < start + duration:
                return start + duration
        return time_s

    def _update(self, now: float) -> None:
        value = 0.0 if self.beam_returns_at(now) > now else self.nominal_ma
        if value != self.current.get():
            self.current.put(value, timestamp=now)
