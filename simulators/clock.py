"""A simulated clock: time that advances when slept on, so that hours of cycling take
seconds, with the same interface as the real one (``time()``, ``sleep(seconds)``).

Devices and plans take a clock as an argument; tests and the demo pass a
:class:`SimulatedClock`, the beamline passes :data:`WALL_CLOCK`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["WALL_CLOCK", "SimulatedClock", "WallClock"]


@dataclass(frozen=True)
class WallClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


WALL_CLOCK = WallClock()


class SimulatedClock:
    """Seconds since the epoch that move only by :meth:`sleep` / :meth:`advance`.

    Parameters
    ----------
    start : float
        Initial time, s since the epoch.
    real_time_factor : float
        Real seconds actually waited per simulated second slept (0: never wait).
    """

    def __init__(self, start: float = 1.7e9, *, real_time_factor: float = 0.0) -> None:
        if real_time_factor < 0:
            raise ValueError(f"real_time_factor must be >= 0, got {real_time_factor}")
        self._now = float(start)
        self.real_time_factor = real_time_factor
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float], None]] = []

    def add_listener(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(now)`` after every advance (simulated devices that evolve with
        time, such as a cell under a potentiostat, catch up there)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[float], None]) -> None:
        self._listeners.remove(callback)

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        with self._lock:
            self._now += seconds
            now = self._now
        for callback in list(self._listeners):
            callback(now)
        return now

    def sleep(self, seconds: float) -> None:
        if self.real_time_factor:
            time.sleep(seconds * self.real_time_factor)
        self.advance(seconds)
