"""XCT scans: darks, flats, then projections over a continuous rotation.

The camera is position-triggered by the rotation stage, which flies at one angular step per
exposure, so frame ``i`` is centred on angle ``i`` of the range. Darks are taken with the
shutter closed, flats with the sample moved out of the beam. Every frame carries the index
``image_type`` (:data:`DARK`, :data:`FLAT`, :data:`PROJECTION`) and its number within that
series (``projection``, or ``frame`` for darks and flats), plus ``scan`` in operando series.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.utils import Msg

from devices.motion import SimAxis, SimShutter
from devices.streaming_detector import PositionTriggered, StreamingDetector, TimeTriggered
from streaming.errors import LimitError

from .stubs import fly

__all__ = ["DARK", "FLAT", "PROJECTION", "rotation_speed", "xct_projections", "xct_scan"]

Plan = Generator[Msg, Any, Any]
DARK, FLAT, PROJECTION = 0, 1, 2


def rotation_speed(rotation: SimAxis, angle_range: tuple[float, float], n_projections: int, exposure: float) -> float:
    step = abs(angle_range[1] - angle_range[0]) / n_projections
    speed = step / exposure
    if speed > float(rotation.max_velocity.get()):
        raise LimitError(
            f"{rotation.name}: {n_projections} projections of {exposure} s over {angle_range} need "
            f"{speed:.4g} {rotation.egu}/s, above its {rotation.max_velocity.get()} maximum"
        )
    return speed


def xct_projections(
    camera: StreamingDetector,
    rotation: SimAxis,
    *,
    n_projections: int,
    angle_range: tuple[float, float] = (0.0, 360.0),
    exposure: float = 0.01,
    flats: int = 10,
    darks: int = 10,
    shutter: SimShutter | None = None,
    sample_stage: SimAxis | None = None,
    out_position: float | None = None,
    scan_index: int | None = None,
) -> Plan:
    """One XCT scan inside an open run (the camera's stream declared)."""
    speed = rotation_speed(rotation, angle_range, n_projections, exposure)
    tags = {} if scan_index is None else {"scan": scan_index}
    yield from bps.checkpoint()  # a pause during the scan re-runs the scan, not what came before
    if darks:
        if shutter is None:
            raise ValueError("darks need a shutter to close")
        yield from bps.mv(shutter, "closed")
        yield from fly(camera, TimeTriggered(darks, exposure, indices={**tags, "image_type": DARK}))
    if shutter is not None:
        yield from bps.mv(shutter, "open")
    if flats:
        if sample_stage is None or out_position is None:
            raise ValueError("flats need a sample_stage and an out_position to move the sample out of the beam")
        in_position = sample_stage.position
        yield from bps.mv(sample_stage, out_position)
        yield from fly(camera, TimeTriggered(flats, exposure, indices={**tags, "image_type": FLAT}))
        yield from bps.mv(sample_stage, in_position)
    angles = np.linspace(*angle_range, n_projections, endpoint=False)
    step = (angle_range[1] - angle_range[0]) / n_projections
    direction = 1.0 if step >= 0 else -1.0
    run_up = 1.05 * 0.5 * speed * float(rotation.acceleration.get()) + abs(step)
    yield from bps.mv(rotation.velocity, float(rotation.max_velocity.get()))
    yield from bps.mv(rotation, float(angles[0] - direction * run_up))
    yield from bps.mv(rotation.velocity, speed)
    acquisition = PositionTriggered(
        axis=rotation, positions=tuple(float(a) for a in angles - step / 2), exposure_s=exposure,
        counter="projection", counter_values=tuple(range(n_projections)),
        indices={**tags, "image_type": PROJECTION},
    )  # fmt: skip
    yield from fly(camera, acquisition, move=(rotation, float(angles[-1] + direction * run_up)))


def xct_scan(
    camera: StreamingDetector,
    rotation: SimAxis,
    *,
    n_projections: int,
    angle_range: tuple[float, float] = (0.0, 360.0),
    exposure: float = 0.01,
    flats: int = 10,
    darks: int = 10,
    shutter: SimShutter | None = None,
    sample_stage: SimAxis | None = None,
    out_position: float | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """An XCT scan in its own run: darks, flats, ``n_projections`` over ``angle_range``.

    Parameters
    ----------
    camera : StreamingDetector
        The imaging camera (PCO.Edge), position-triggered by ``rotation``.
    rotation : SimAxis
        Flown at one step per ``exposure`` s.
    n_projections : int
    angle_range : (float, float)
        Degrees; projections from the first, end excluded (0-360 by default).
    exposure : float
        Seconds per frame.
    flats, darks : int
        Frames of each; flats move ``sample_stage`` to ``out_position``, darks close ``shutter``.
    """
    rotation_speed(rotation, angle_range, n_projections, exposure)
    _md = {
        "plan_name": "xct_scan",
        "plan_args": {"camera": camera.name, "rotation": rotation.name, "n_projections": n_projections,
                      "angle_range": list(angle_range), "exposure": exposure, "flats": flats, "darks": darks},
        "detectors": [camera.name],
        "motors": [rotation.name],
        "shape": [n_projections],
        "extents": [list(angle_range)],
        "num_points": n_projections + flats + darks,
        "exposure_s": exposure,
        "hints": {"dimensions": [([rotation.name], "primary")]},
    }  # fmt: skip
    _md.update(md or {})

    @bpp.stage_decorator([camera])
    @bpp.run_decorator(md=_md)
    def inner() -> Plan:
        yield from bps.declare_stream(camera, name=camera.name, collect=True)
        yield from xct_projections(
            camera, rotation, n_projections=n_projections, angle_range=angle_range, exposure=exposure,
            flats=flats, darks=darks, shutter=shutter, sample_stage=sample_stage, out_position=out_position,
        )  # fmt: skip
        yield from bps.trigger_and_read([rotation])

    return (yield from inner())
