"""A beamline user's XCS-CT script (the issue's flow): a RunEngine, default (non-blocking)
publishers, the simulated XCS-CT end station, XCT scans alternating with XCS acquisitions at
three cathode heights while the cell charges at 1C.

Run: ``python -m tests.flows.live_xcsct CALIBRATION_DIR RUN_DIR N_RECEIVERS [MAX_REPEATS
[PAUSE_AFTER]]``; it writes the HEXITEC calibration first (as a beamline has it), prints the
two endpoints it bound, waits for ``N_RECEIVERS`` on each, runs, and prints the run's uid.
With ``PAUSE_AFTER`` HEXITEC frames sent, it hard-pauses the RunEngine and resumes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from bluesky import RunEngine

from devices import FrameSink, parse_protocol, sim_xcsct_beamline
from plans import operando_xcsct
from streaming import DocumentPublisher, FramePublisher
from tests.flows.live_xrdct import hard_pause_after, run_resuming


def main(calibration_dir: str, run_directory: str, n_receivers: int, max_repeats: int = 2,
         pause_after: int | None = None) -> None:  # fmt: skip
    RE = RunEngine({})  # noqa: N806  (bluesky's name for it)
    with DocumentPublisher("tcp://127.0.0.1:0") as documents, FramePublisher("tcp://127.0.0.1:0") as frames:
        xcs = sim_xcsct_beamline(sink=FrameSink(frames, run_directory=run_directory))
        calibration = Path(calibration_dir)
        calibration.mkdir(parents=True, exist_ok=True)
        xcs.hexitec.write_calibration(calibration)
        np.save(calibration / "darks.npy", xcs.hexitec.simulator().dark_frames(500))
        print(documents.address, frames.address, flush=True)
        RE.subscribe(documents)
        RE.subscribe(xcs.sink)
        documents.wait_for_subscribers(n_receivers, timeout_s=120)
        frames.wait_for_subscribers(n_receivers, timeout_s=120)
        protocol = parse_protocol("CC charge to 4.2 V at 1C", capacity_ah=xcs.potentiostat.battery.nominal_capacity_ah)
        if pause_after is not None:
            hard_pause_after(RE, xcs.sink, "hexitec", pause_after)
        (uid,) = run_resuming(RE, operando_xcsct(
            xcs.potentiostat, xcs.pco, xcs.hexitec, xcs.rotation, xcs.vertical, protocol=protocol,
            n_projections=180, xcs_positions_mm=xcs.cathode_heights_mm(3), xct_exposure=0.02, xcs_exposure=0.5,
            flats=10, darks=10, shutter=xcs.shutter, beam=xcs.beam, sample_stage=xcs.translation, out_position=25.0,
            max_repeats=max_repeats,
        ))  # fmt: skip
        print(uid, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:6]))
