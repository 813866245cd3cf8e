"""A beamline user's script (the README's "From Python, with bluesky"): a RunEngine, default
(non-blocking) publishers, the simulated XRD-CT end station, one zigzag scan.

Run: ``python -m tests.flows.live_xrdct PRESET RUN_DIR N_RECEIVERS [PAUSE_AFTER [abort]]
[--late-receiver-after N]``; it prints the two endpoints it bound, waits for ``N_RECEIVERS`` on
each, scans, and prints the run's uid. With ``PAUSE_AFTER`` frames sent, it hard-pauses the
RunEngine (two Ctrl-C) and resumes it, or with ``abort`` aborts the run (``RE.abort()``). With
``--late-receiver-after N``, after N frames it waits until one more receiver has joined (one
started mid-scan, however slow the machine) before it sends the next.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from devices import FrameSink, sim_xrdct_beamline
from plans import xrdct_zigzag
from streaming import DocumentPublisher, FramePublisher
from streaming.wire.protocol import FrameHeader


def hard_pause_after(RE: RunEngine, sink: FrameSink, stream: str, n_frames: int) -> None:
    """Hard-pause ``RE`` (as two Ctrl-C do) once ``sink`` has sent ``n_frames`` of ``stream``."""

    def watch() -> None:
        while sink.published[stream] < n_frames:
            time.sleep(0.001)
        RE.request_pause(defer=False)

    threading.Thread(target=watch, daemon=True).start()


def run_resuming(RE: RunEngine, plan, *, abort: bool = False) -> tuple[str, ...]:
    """``RE(plan)``, resumed after a pause as a user types ``RE.resume()`` (or ``RE.abort()``)."""
    try:
        return RE(plan)
    except RunEngineInterrupted:
        print(f"paused ({RE.state}); {'aborting' if abort else 'resuming'}", file=sys.stderr, flush=True)
        return RE.abort("aborted mid-line") if abort else RE.resume()


class LateJoinFramePublisher(FramePublisher):
    """A default (non-blocking) frame publisher that, once, after ``after`` frames, waits for
    ``receivers`` subscribers before it sends on."""

    def __init__(self, address: str, *, after: int | None, receivers: int) -> None:
        super().__init__(address)
        self.late_after, self.late_receivers = after, receivers

    def send(self, header: FrameHeader, data: np.ndarray) -> None:
        if self.n_sent == self.late_after:
            self.wait_for_subscribers(self.late_receivers, timeout_s=300)
        super().send(header, data)


def main(preset: str, run_directory: str, n_receivers: int, pause_after: int | None = None,
         then: str = "resume", *, late_receiver_after: int | None = None) -> None:  # fmt: skip
    RE = RunEngine({})  # noqa: N806  (bluesky's name for it)
    frames_publisher = LateJoinFramePublisher("tcp://127.0.0.1:0", after=late_receiver_after,
                                              receivers=n_receivers + 1)  # fmt: skip
    with DocumentPublisher("tcp://127.0.0.1:0") as documents, frames_publisher as frames:
        print(documents.address, frames.address, flush=True)
        RE.subscribe(documents)
        documents.wait_for_subscribers(n_receivers, timeout_s=120)
        frames.wait_for_subscribers(n_receivers, timeout_s=120)
        xrd = sim_xrdct_beamline(preset=preset, sink=FrameSink(frames, run_directory=run_directory))
        RE.subscribe(xrd.sink)
        if pause_after is not None:
            hard_pause_after(RE, xrd.sink, "pilatus", pause_after)
        plan = xrdct_zigzag(xrd.pilatus, xrd.translation, xrd.rotation, **xrd.zigzag_kwargs())
        (uid,) = run_resuming(RE, plan, abort=then == "abort")
        print(uid, flush=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    late = None
    if "--late-receiver-after" in arguments:
        at = arguments.index("--late-receiver-after")
        late = int(arguments[at + 1])
        del arguments[at : at + 2]
    main(arguments[0], arguments[1], int(arguments[2]), *(int(a) for a in arguments[3:4]), *arguments[4:5],
         late_receiver_after=late)  # fmt: skip
