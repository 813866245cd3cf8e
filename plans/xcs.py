"""XCS acquisitions: the fan (sheet) beam at several heights, the HEXITEC at its frame rate.

At each height the vertical stage moves the cell so the sheet crosses it there, and the
detector takes ``exposure × frame rate`` frames (9118.87 Hz for the HEXITEC). Frames carry
the indices ``position`` (which height) and ``frame``, plus ``scan`` in operando series.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from devices.motion import SimAxis, SimBeamShaper, SimShutter
from devices.streaming_detector import StreamingDetector, TimeTriggered

from .stubs import fly

__all__ = ["xcs_acquire", "xcs_frames", "xcs_positions"]

Plan = Generator[Msg, Any, Any]


def xcs_frames(hexitec: StreamingDetector, exposure: float) -> int:
    """Frames of one XCS acquisition of ``exposure`` seconds at the detector's frame rate."""
    return max(1, round(exposure * hexitec.max_frame_rate_hz))


def xcs_positions(
    hexitec: StreamingDetector,
    vertical: SimAxis,
    *,
    positions: Sequence[float],
    exposure: float,
    beam: SimBeamShaper | None = None,
    shutter: SimShutter | None = None,
    scan_index: int | None = None,
    line_stream: str = "primary",
) -> Plan:
    """One XCS acquisition series inside an open run (the detector's stream declared)."""
    for height in positions:
        vertical.check_value(float(height))
    frame_period_s = 1 / hexitec.max_frame_rate_hz
    n_frames = xcs_frames(hexitec, exposure)
    if beam is not None:
        yield from bps.mv(beam, "fan")
    if shutter is not None:
        yield from bps.mv(shutter, "open")
    tags = {} if scan_index is None else {"scan": scan_index}
    for index, height in enumerate(positions):
        yield from bps.checkpoint()
        yield from bps.mv(vertical, float(height))
        acquisition = TimeTriggered(n_frames, frame_period_s, indices={**tags, "position": index})
        yield from fly(hexitec, acquisition)
        yield from bps.trigger_and_read([vertical], name=line_stream)


def xcs_acquire(
    hexitec: StreamingDetector,
    vertical: SimAxis,
    *,
    positions: Sequence[float],
    exposure: float,
    beam: SimBeamShaper | None = None,
    shutter: SimShutter | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """XCS spectra at each height of ``positions`` (mm), ``exposure`` s each, in one run.

    Parameters
    ----------
    hexitec : StreamingDetector
        The spectroscopic detector (HEXITEC), free-running at its frame rate.
    vertical : SimAxis
        Moves the cell through the sheet beam.
    positions : sequence of float
        Heights, mm (from the bottom of the can for the simulated coin cell).
    exposure : float
        Seconds per height.
    beam, shutter : optional
        Set to the fan beam and opened first.
    """
    _md = {
        "plan_name": "xcs_acquire",
        "plan_args": {"hexitec": hexitec.name, "vertical": vertical.name, "positions": [float(p) for p in positions],
                      "exposure": exposure},
        "detectors": [hexitec.name],
        "motors": [vertical.name],
        "shape": [len(positions)],
        "extents": [[float(min(positions)), float(max(positions))]],
        "num_points": len(positions),
        "exposure_s": exposure,
        "hints": {"dimensions": [([vertical.name], "primary")]},
    }  # fmt: skip
    _md.update(md or {})

    @bpp.stage_decorator([hexitec])
    @bpp.run_decorator(md=_md)
    def inner() -> Plan:
        yield from bps.declare_stream(hexitec, name=hexitec.name, collect=True)
        yield from xcs_positions(hexitec, vertical, positions=positions, exposure=exposure, beam=beam, shutter=shutter)

    return (yield from inner())
