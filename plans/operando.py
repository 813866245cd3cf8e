"""Operando plans: acquisitions repeated while the potentiostat cycles the cell.

- :func:`operando_xcsct`: XCT scans and XCS acquisitions alternate (the XCS-CT paper's remote
  triggering) while a protocol runs.
- :func:`operando_xrdct`: zigzag XRD-CT scans repeat while a protocol runs.

Each is one run: the potentiostat's readings are its ``potentiostat`` monitor stream, every
frame carries the index ``scan`` of its repeat, and the ``primary`` stream has one event per
acquisition with the potentiostat's reading at that moment. The plan ends when the protocol
ends (after the acquisition under way) or after ``max_repeats``; whatever way it ends —
finished, failed, stopped or aborted — the potentiostat is left at open circuit and the
shutter closed.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from devices.motion import ClockDelay, SimAxis, SimBeamShaper, SimShutter
from devices.potentiostat import SimPotentiostat
from devices.protocol import CyclingProtocol
from devices.streaming_detector import StreamingDetector

from .cycling import cycling_metadata
from .stubs import close_shutter
from .xcs import xcs_frames, xcs_positions
from .xct import rotation_speed, xct_projections
from .xrdct import geometry_metadata, line_geometry, zigzag_lines

__all__ = ["operando_xcsct", "operando_xrdct"]

Plan = Generator[Msg, Any, Any]


def _safe_end(shutter: SimShutter | None, potentiostat: SimPotentiostat) -> Plan:
    yield from bps.stop(potentiostat)
    yield from close_shutter(shutter)


def _repeat_while_cycling(
    potentiostat: SimPotentiostat,
    protocol: CyclingProtocol,
    max_repeats: int | None,
    acquire,
    *,
    delay: ClockDelay | None,
    interval_s: float,
) -> Plan:
    yield from bps.monitor(potentiostat, name=potentiostat.name)
    status = yield from bps.abs_set(potentiostat, protocol, group="cycling")
    repeat = 0
    while not status.done and (max_repeats is None or repeat < max_repeats):
        started = delay.clock.time() if delay is not None else 0.0
        yield from acquire(repeat)
        repeat += 1
        more = max_repeats is None or repeat < max_repeats
        if delay is not None and more and not status.done:
            # the next repeat starts interval_s after this one started (the cell cycles meanwhile)
            yield from bps.checkpoint()
            yield from bps.mv(delay, max(0.0, started + interval_s - delay.clock.time()))
    yield from bps.unmonitor(potentiostat)
    return repeat


def operando_xcsct(
    potentiostat: SimPotentiostat,
    camera: StreamingDetector,
    hexitec: StreamingDetector,
    rotation: SimAxis,
    vertical: SimAxis,
    *,
    protocol: CyclingProtocol,
    n_projections: int,
    xcs_positions_mm: Sequence[float],
    xct_exposure: float = 0.01,
    xcs_exposure: float = 1.0,
    angle_range: tuple[float, float] = (0.0, 360.0),
    flats: int = 10,
    darks: int = 10,
    shutter: SimShutter | None = None,
    beam: SimBeamShaper | None = None,
    sample_stage: SimAxis | None = None,
    out_position: float | None = None,
    max_repeats: int | None = None,
    delay: ClockDelay | None = None,
    interval_s: float = 0.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Alternate XCT scans (box beam) and XCS acquisitions (fan beam) while ``protocol`` runs.

    Parameters
    ----------
    potentiostat : SimPotentiostat
    camera, hexitec : StreamingDetector
        The imaging camera (PCO.Edge) and the spectroscopic detector (HEXITEC).
    rotation, vertical : SimAxis
    protocol : CyclingProtocol
        Checked against the potentiostat's limits before the run opens.
    n_projections, angle_range, xct_exposure, flats, darks : XCT scan settings
    xcs_positions_mm, xcs_exposure : XCS heights (mm) and seconds at each
    max_repeats : int, optional
        Stop after this many XCT + XCS pairs even if the protocol goes on.
    delay, interval_s : optional
        Start a pair every ``interval_s`` seconds of experiment time (waiting on ``delay``
        between pairs), to spread the acquisitions over the protocol.
    """
    protocol.validate(potentiostat.limits)  # everything is checked before the run opens
    rotation_speed(rotation, angle_range, n_projections, xct_exposure)
    for height in xcs_positions_mm:
        vertical.check_value(float(height))
    _md = {
        "plan_name": "operando_xcsct",
        "plan_args": {"n_projections": n_projections, "xcs_positions_mm": [float(p) for p in xcs_positions_mm],
                      "xct_exposure": xct_exposure, "xcs_exposure": xcs_exposure, "angle_range": list(angle_range),
                      "flats": flats, "darks": darks, "max_repeats": max_repeats, "interval_s": interval_s},
        # what an analysis expects of each acquisition, to say what it was made from
        "xcs_frames_per_acquisition": xcs_frames(hexitec, xcs_exposure),
        "detectors": [camera.name, hexitec.name],
        "motors": [rotation.name, vertical.name],
        "hints": {"dimensions": [(["time"], "primary")]},
        **cycling_metadata(potentiostat, protocol),
    }  # fmt: skip
    _md.update(md or {})

    def acquire(repeat: int) -> Plan:
        if beam is not None:
            yield from bps.mv(beam, "box")
        yield from xct_projections(
            camera, rotation, n_projections=n_projections, angle_range=angle_range, exposure=xct_exposure,
            flats=flats, darks=darks, shutter=shutter, sample_stage=sample_stage, out_position=out_position,
            scan_index=repeat,
        )  # fmt: skip
        yield from bps.trigger_and_read([potentiostat])
        yield from xcs_positions(
            hexitec, vertical, positions=xcs_positions_mm, exposure=xcs_exposure, beam=beam, shutter=shutter,
            scan_index=repeat, line_stream="xcs_positions",
        )  # fmt: skip
        yield from bps.trigger_and_read([potentiostat])

    @bpp.stage_decorator([camera, hexitec])
    @bpp.run_decorator(md=_md)
    def inner() -> Plan:
        yield from bps.declare_stream(camera, name=camera.name, collect=True)
        yield from bps.declare_stream(hexitec, name=hexitec.name, collect=True)
        return (yield from _repeat_while_cycling(
            potentiostat, protocol, max_repeats, acquire, delay=delay, interval_s=interval_s
        ))

    return (yield from bpp.finalize_wrapper(inner(), _safe_end(shutter, potentiostat)))


def operando_xrdct(
    potentiostat: SimPotentiostat,
    detector: StreamingDetector,
    translation: SimAxis,
    rotation: SimAxis,
    *,
    protocol: CyclingProtocol,
    n_translations: int,
    n_angles: int,
    translation_range: tuple[float, float],
    angle_range: tuple[float, float] = (0.0, 180.0),
    exposure: float = 0.01,
    poni: Any = None,
    shutter: SimShutter | None = None,
    max_repeats: int | None = None,
    delay: ClockDelay | None = None,
    interval_s: float = 0.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Repeat zigzag XRD-CT scans while ``protocol`` runs (see :func:`~plans.xrdct.xrdct_zigzag`),
    one every ``interval_s`` of experiment time if a ``delay`` is given."""
    protocol.validate(potentiostat.limits)  # everything is checked before the run opens
    line_geometry(translation, translation_range, n_translations, exposure)
    _md = {
        "plan_name": "operando_xrdct",
        "plan_args": {"n_translations": n_translations, "n_angles": n_angles,
                      "translation_range": list(translation_range), "angle_range": list(angle_range),
                      "exposure": exposure, "max_repeats": max_repeats, "interval_s": interval_s},
        "detectors": [detector.name],
        "motors": [rotation.name, translation.name],
        "shape": [n_angles, n_translations],
        "snaking": [False, True],
        "extents": [list(angle_range), list(translation_range)],
        "exposure_s": exposure,
        **({"num_points": max_repeats * n_angles * n_translations} if max_repeats else {}),
        "hints": {"dimensions": [([rotation.name], "primary")]},
        "geometry": geometry_metadata(poni),
        **cycling_metadata(potentiostat, protocol),
    }  # fmt: skip
    _md.update(md or {})

    def acquire(repeat: int) -> Plan:
        if shutter is not None:
            yield from bps.mv(shutter, "open")
        yield from zigzag_lines(
            detector, translation, rotation, n_translations=n_translations, n_angles=n_angles,
            translation_range=translation_range, angle_range=angle_range, exposure=exposure, scan_index=repeat,
            line_stream="lines",
        )  # fmt: skip
        yield from bps.trigger_and_read([potentiostat])

    @bpp.stage_decorator([detector])
    @bpp.run_decorator(md=_md)
    def inner() -> Plan:
        yield from bps.declare_stream(detector, name=detector.name, collect=True)
        return (yield from _repeat_while_cycling(
            potentiostat, protocol, max_repeats, acquire, delay=delay, interval_s=interval_s
        ))

    return (yield from bpp.finalize_wrapper(inner(), _safe_end(shutter, potentiostat)))
