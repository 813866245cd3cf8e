"""Electrochemical cycling: protocols as data (:mod:`devices.protocol`) run by the potentiostat.

:func:`run_protocol` is the plan for cycling alone: it starts the protocol, records the
potentiostat's readings as a monitor stream and waits, on the experiment clock, until the
protocol ends. The operando plans (:mod:`plans.operando`) acquire while it runs.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from devices.motion import ClockDelay
from devices.potentiostat import SimPotentiostat
from devices.protocol import (
    CurrentStep,
    CyclingProtocol,
    PotentiostatLimits,
    RestStep,
    VoltageStep,
    parse_protocol,
)

__all__ = [
    "CurrentStep",
    "CyclingProtocol",
    "PotentiostatLimits",
    "RestStep",
    "VoltageStep",
    "cycling_metadata",
    "parse_protocol",
    "run_protocol",
]

Plan = Generator[Msg, Any, Any]


def cycling_metadata(potentiostat: SimPotentiostat, protocol: CyclingProtocol) -> dict[str, Any]:
    """What a start document records of the electrochemistry."""
    limits = potentiostat.limits
    return {
        "protocol": {"name": protocol.name, "repeats": protocol.repeats, "steps": protocol.describe()},
        "potentiostat_limits": {"v_min": limits.v_min, "v_max": limits.v_max, "max_current_a": limits.max_current_a},
    }


def run_protocol(
    potentiostat: SimPotentiostat,
    protocol: CyclingProtocol,
    *,
    delay: ClockDelay,
    poll_s: float = 60.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Run ``protocol`` to its end in one run, with the readings as the ``potentiostat`` stream.

    The protocol is checked against the potentiostat's limits before the run opens; if the
    plan fails or is aborted, the potentiostat goes to open circuit.
    """
    protocol.validate(potentiostat.limits)
    _md = {"plan_name": "run_protocol", "plan_args": {"potentiostat": potentiostat.name, "poll_s": poll_s},
           **cycling_metadata(potentiostat, protocol)}  # fmt: skip
    _md.update(md or {})

    @bpp.run_decorator(md=_md)
    def inner() -> Plan:
        yield from bps.monitor(potentiostat, name=potentiostat.name)
        status = yield from bps.abs_set(potentiostat, protocol, group="cycling")
        while not status.done:
            yield from bps.checkpoint()
            yield from bps.mv(delay, poll_s)
            yield from bps.trigger_and_read([potentiostat])
        yield from bps.unmonitor(potentiostat)

    return (yield from bpp.finalize_wrapper(inner(), bps.stop(potentiostat)))
