"""A beamline user's script (the README's "From Python, with bluesky"): a RunEngine, default
(non-blocking) publishers, the simulated XRD-CT end station, one zigzag scan.

Run: ``python -m tests.flows.live_xrdct PRESET RUN_DIR N_RECEIVERS``; it prints the two
endpoints it bound, waits for ``N_RECEIVERS`` on each, scans, and prints the run's uid.
"""

from __future__ import annotations

import sys

from bluesky import RunEngine

from devices import FrameSink, sim_xrdct_beamline
from plans import xrdct_zigzag
from streaming import DocumentPublisher, FramePublisher


def main(preset: str, run_directory: str, n_receivers: int) -> None:
    RE = RunEngine({})  # noqa: N806  (bluesky's name for it)
    with DocumentPublisher("tcp://127.0.0.1:0") as documents, FramePublisher("tcp://127.0.0.1:0") as frames:
        print(documents.address, frames.address, flush=True)
        RE.subscribe(documents)
        documents.wait_for_subscribers(n_receivers, timeout_s=120)
        frames.wait_for_subscribers(n_receivers, timeout_s=120)
        xrd = sim_xrdct_beamline(preset=preset, sink=FrameSink(frames, run_directory=run_directory))
        RE.subscribe(xrd.sink)
        (uid,) = RE(xrdct_zigzag(xrd.pilatus, xrd.translation, xrd.rotation, **xrd.zigzag_kwargs()))
        print(uid, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
