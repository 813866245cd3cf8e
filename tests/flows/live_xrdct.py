"""A beamline user's script (the README's "From Python, with bluesky"): a RunEngine, default
(non-blocking) publishers, the simulated XRD-CT end station, one zigzag scan.

Run: ``python -m tests.flows.live_xrdct PRESET RUN_DIR N_RECEIVERS [PAUSE_AFTER [abort]]``; it
prints the two endpoints it bound, waits for ``N_RECEIVERS`` on each, scans, and prints the
run's uid. With ``PAUSE_AFTER`` frames sent, it hard-pauses the RunEngine (two Ctrl-C) and
resumes it, or with ``abort`` aborts the run (``RE.abort()``).
"""

from __future__ import annotations

import sys
import threading
import time

from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from devices import FrameSink, sim_xrdct_beamline
from plans import xrdct_zigzag
from streaming import DocumentPublisher, FramePublisher


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


def main(preset: str, run_directory: str, n_receivers: int, pause_after: int | None = None,
         then: str = "resume") -> None:  # fmt: skip
    RE = RunEngine({})  # noqa: N806  (bluesky's name for it)
    with DocumentPublisher("tcp://127.0.0.1:0") as documents, FramePublisher("tcp://127.0.0.1:0") as frames:
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
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]), *sys.argv[5:6])
