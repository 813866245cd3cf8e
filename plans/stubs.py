"""Plan stubs shared by the scans."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.utils import Msg, short_uid

from devices.motion import SimAxis, SimShutter
from devices.streaming_detector import Acquisition, StreamingDetector

__all__ = ["close_shutter", "fly", "open_shutter"]

Plan = Generator[Msg, Any, Any]


def fly(detector: StreamingDetector, acquisition: Acquisition, move: tuple[SimAxis, float] | None = None) -> Plan:
    """Arm ``detector`` for ``acquisition``, start it, make ``move`` (axis, target) if given
    (the position triggers fire during it), wait for the frames and collect their stream.

    Every wait is on this stub's own group: a status left running elsewhere (a cycling
    protocol) never blocks it.
    """
    group = short_uid("fly")
    yield from bps.prepare(detector, acquisition, group=group, wait=True)
    yield from bps.kickoff(detector, group=group, wait=True)
    if move is not None:
        yield from bps.abs_set(*move, group=group, wait=True)
    yield from bps.complete(detector, group=group, wait=True)
    yield from bps.collect(detector, name=detector.name)


def close_shutter(shutter: SimShutter | None) -> Plan:
    """Close ``shutter`` if there is one (a plan's cleanup)."""
    if shutter is not None:
        yield from bps.mv(shutter, "closed")


def open_shutter(shutter: SimShutter | None) -> Plan:
    """Open ``shutter`` if there is one (after a suspension)."""
    if shutter is not None:
        yield from bps.mv(shutter, "open")
