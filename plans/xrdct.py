"""XRD-CT zigzag scans: continuous translation across the pencil beam, stepped rotation.

Each line (one angle) flies the translation axis at ``step / exposure`` across the cell
while the detector takes one frame per translation step (position triggered); even lines
run forward, odd lines backward (the zigzag: no return travel). Every frame is tagged with
its ``angle`` and ``translation`` indices (and ``scan`` in operando series); consumers place
it by those, never by arrival order. A ``checkpoint`` precedes every line: a deferred pause
waits for the line's end; a hard pause or a suspension (beam loss) re-runs the interrupted line
from its start (every move of a line is unconditional, since bluesky replays the messages
after a checkpoint, not this code), and the re-run frames carry the index ``attempt``.

The run's ``primary`` stream has one event per line (the rotation angle), which is what
``LiveTable`` and ``BestEffortCallback`` show; the frames are in the detector's own stream as
external assets.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.utils import Msg

from devices.motion import SimAxis, SimShutter
from devices.streaming_detector import PositionTriggered, StreamingDetector
from streaming.errors import LimitError

from .stubs import close_shutter, fly

__all__ = ["geometry_metadata", "line_geometry", "xrdct_zigzag", "zigzag_lines"]

Plan = Generator[Msg, Any, Any]


def geometry_metadata(poni: str | Path | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The pyFAI geometry as plain JSON-able data: from a ``.poni`` file or a config dict."""
    if poni is None:
        return None
    if isinstance(poni, Mapping):
        config = dict(poni)
    else:
        from pyFAI.io.ponifile import PoniFile

        config = PoniFile(str(poni)).as_dict()
    return json.loads(json.dumps(config, default=str))


def line_geometry(
    translation: SimAxis, translation_range: tuple[float, float], n_translations: int, exposure: float
) -> tuple[np.ndarray, float, float, float]:
    """Nominal positions, step, fly speed and run-up of a line; refused before any motion
    if the speed or the travel with run-up is beyond the axis' limits."""
    positions = np.linspace(*translation_range, n_translations)
    step = abs(positions[1] - positions[0]) if n_translations > 1 else 0.0
    speed = step / exposure if step else float(translation.velocity.get())
    max_speed = float(translation.max_velocity.get())
    if speed > max_speed:
        raise LimitError(
            f"{translation.name}: {step:.4g} {translation.egu} per {exposure} s frame needs "
            f"{speed:.4g} {translation.egu}/s, above its {max_speed} maximum: lengthen the exposure"
        )
    run_up = 1.05 * 0.5 * speed * float(translation.acceleration.get()) + step
    low, high = min(translation_range) - run_up, max(translation_range) + run_up
    translation.check_value(low)
    translation.check_value(high)
    return positions, step, speed, run_up


def zigzag_lines(
    detector: StreamingDetector,
    translation: SimAxis,
    rotation: SimAxis,
    *,
    n_translations: int,
    n_angles: int,
    translation_range: tuple[float, float],
    angle_range: tuple[float, float] = (0.0, 180.0),
    exposure: float = 0.01,
    scan_index: int | None = None,
    line_stream: str = "primary",
) -> Plan:
    """The lines of one zigzag scan inside an open run (the detector stream declared)."""
    positions, step, speed, run_up = line_geometry(translation, translation_range, n_translations, exposure)
    angles = np.linspace(*angle_range, n_angles, endpoint=False)
    for angle in angles:
        rotation.check_value(float(angle))
    yield from bps.mv(translation.velocity, speed)
    tags = {} if scan_index is None else {"scan": scan_index}
    for angle_index, angle in enumerate(angles):
        yield from bps.checkpoint()
        forward = angle_index % 2 == 0
        order = np.arange(n_translations) if forward else np.arange(n_translations)[::-1]
        direction = 1.0 if forward else -1.0
        start = positions[order[0]] - direction * run_up
        stop = positions[order[-1]] + direction * run_up
        # both moves unconditionally: after a hard pause bluesky replays these messages, not
        # this code, and the translation then stands wherever the pause stopped it
        yield from bps.mv(rotation, float(angle))
        yield from bps.mv(translation, float(start))
        # a trigger opens each exposure half a step early, so the frame is centred on its point
        triggers = tuple(float(p) for p in positions[order] - direction * step / 2)
        acquisition = PositionTriggered(
            axis=translation, positions=triggers, exposure_s=exposure, counter="translation",
            counter_values=tuple(int(i) for i in order), indices={**tags, "angle": angle_index},
        )  # fmt: skip
        yield from fly(detector, acquisition, move=(translation, float(stop)))
        yield from bps.trigger_and_read([rotation], name=line_stream)


def xrdct_zigzag(
    detector: StreamingDetector,
    translation: SimAxis,
    rotation: SimAxis,
    *,
    n_translations: int,
    n_angles: int,
    translation_range: tuple[float, float],
    angle_range: tuple[float, float] = (0.0, 180.0),
    exposure: float = 0.01,
    poni: str | Path | Mapping[str, Any] | None = None,
    shutter: SimShutter | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """One XRD-CT scan: ``n_angles`` lines of ``n_translations`` frames, zigzagging.

    Parameters
    ----------
    detector : StreamingDetector
        The area detector (Pilatus), position-triggered by the translation axis.
    translation, rotation : SimAxis
        Fast (flown) and slow (stepped) axes.
    n_translations, n_angles : int
        Frames per line, lines per scan.
    translation_range : (float, float)
        Positions of the first and last frame of a forward line, mm.
    angle_range : (float, float)
        Rotation range, degrees; ``n_angles`` angles from the first, end excluded.
    exposure : float
        Seconds per frame; the translation flies at one step per exposure.
    poni : path or dict, optional
        The detector geometry (pyFAI), recorded in the start document as ``geometry``.
    shutter : optional
        Opened for the scan, closed at its end (also on failure or abort).
    md : dict, optional
        Extra start-document metadata.
    """
    line_geometry(translation, translation_range, n_translations, exposure)  # refuse before the run opens
    _md = {
        "plan_name": "xrdct_zigzag",
        "plan_args": {
            "detector": detector.name, "translation": translation.name, "rotation": rotation.name,
            "n_translations": n_translations, "n_angles": n_angles, "translation_range": list(translation_range),
            "angle_range": list(angle_range), "exposure": exposure,
        },
        "detectors": [detector.name],
        "motors": [rotation.name, translation.name],
        "shape": [n_angles, n_translations],
        "snaking": [False, True],
        "extents": [list(angle_range), list(translation_range)],
        "num_points": n_angles * n_translations,
        "num_intervals": n_angles * n_translations - 1,
        "exposure_s": exposure,
        "hints": {"dimensions": [([rotation.name], "primary")]},
        "geometry": geometry_metadata(poni),
    }  # fmt: skip
    _md.update(md or {})

    @bpp.stage_decorator([detector])
    @bpp.run_decorator(md=_md)
    def inner() -> Plan:
        yield from bps.declare_stream(detector, name=detector.name, collect=True)
        if shutter is not None:
            yield from bps.mv(shutter, "open")
        yield from zigzag_lines(
            detector, translation, rotation, n_translations=n_translations, n_angles=n_angles,
            translation_range=translation_range, angle_range=angle_range, exposure=exposure,
        )  # fmt: skip

    return (yield from bpp.finalize_wrapper(inner(), close_shutter(shutter)))
