"""Suspenders: a scan waits, shutter closed, while the beam is down, and goes on when it is back.

- :func:`suspend_on_beam_loss`: bluesky's ``SuspendFloor`` on a ring current (or beam monitor)
  signal. When the current falls below ``suspend_below_ma`` the RunEngine suspends at once:
  the shutter closes, the scan waits while the cell keeps cycling (the potentiostat's protocol
  goes on), and when the current is back above ``resume_above_ma`` the shutter opens and the
  line or acquisition under way is taken again from its checkpoint.
- :func:`wait_on_simulated_clock`: the wait of a simulated beamline, whose clock moves only
  when slept on: it sleeps the experiment clock until the simulated beam returns.

At a beamline, the signal is the ring current PV, e.g.
``EpicsSignalRO("SR:C03-BI{DCCT:1}I:Real-I", name="ring_current")``, and no wait is needed:
``RE.install_suspender(suspend_on_beam_loss(ring_current, shutter=shutter, keep_running=[potentiostat]))``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.suspenders import SuspendFloor
from bluesky.utils import Msg

from devices.motion import ClockDelay, SimShutter
from devices.ring import SimRingCurrent

from .stubs import close_shutter, open_shutter

__all__ = ["suspend_on_beam_loss", "wait_on_simulated_clock"]

Plan = Generator[Msg, Any, Any]


def suspend_on_beam_loss(
    current: Any,
    *,
    shutter: SimShutter | None = None,
    keep_running: Sequence[Any] = (),
    wait: Callable[[], Plan] | None = None,
    suspend_below_ma: float = 50.0,
    resume_above_ma: float = 150.0,
) -> SuspendFloor:
    """A suspender on ``current`` (an ophyd signal, mA); install it with
    ``RE.install_suspender(...)``.

    ``keep_running``: devices whose work goes on through the suspension (the potentiostat:
    electrochemistry does not stop for a beam dump). bluesky stops every device a plan has set
    when it suspends, as motors must; these are resumed at once, before the shutter closes.
    ``wait`` is a plan run after the shutter closes (a simulated beamline's
    :func:`wait_on_simulated_clock`; none at a real one)."""

    def before() -> Plan:
        for device in keep_running:
            device.resume()  # a side effect, once per suspension: this plan is never replayed
        yield from close_shutter(shutter)
        if wait is not None:
            yield from wait()

    def after() -> Plan:
        yield from open_shutter(shutter)

    return SuspendFloor(current, suspend_thresh=suspend_below_ma, resume_thresh=resume_above_ma,
                        pre_plan=before, post_plan=after, tripped_message="the beam is down")  # fmt: skip


def wait_on_simulated_clock(ring: SimRingCurrent) -> Callable[[], Plan]:
    """The wait of a simulated beamline: sleep the experiment clock until ``ring``'s beam is back."""
    delay = ClockDelay(name=f"{ring.name}_wait", clock=ring.clock)

    def wait() -> Plan:
        now = ring.clock.time()
        yield from bps.mv(delay, max(0.0, ring.beam_returns_at(now) - now))

    return wait
