"""HEXITEC frames through the recorder and the live XCS-CT analysis: sustained rates against the
detector's 9118.87 Hz, in batches (a thousand frames a message) and one frame a message.

An ``operando_xcsct`` run of the simulated coin cell (two XCT scans of 180 projections, XCS at
three cathode heights, 0.5 s each: 27 354 HEXITEC frames) is recorded once. It is then sent
again as fast as the receivers take it (blocking publishers), twice per setting, into

- ``operando record`` (its own process): the rate is the HEXITEC frames over the span of
  their receipt times in the new file;
- the XCS-CT analysis (a consumer in this process): the rate is the HEXITEC frames over the
  span between the analysis taking its first and its last HEXITEC message (the XCT
  reductions between them included, as live);

with the HEXITEC frames as recorded (batches) and split into one message per frame (what the
detector sent before). Medians of the repeats; ratios to 9118.87 Hz.

Results: ``benchmarks/results/xcs_live.json``.
Run: ``python -m benchmarks.benchmark_xcs_live`` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._machine import machine_description, write_results

RESULTS = Path(__file__).parent / "results" / "xcs_live.json"
HEXITEC_HZ = 9118.87


def record_run(folder: Path) -> tuple[Path, Path]:
    """The run, recorded; (run file, calibration folder)."""
    from bluesky import RunEngine

    from devices import FrameSink, parse_protocol, sim_xcsct_beamline
    from plans import operando_xcsct
    from streaming import DocumentPublisher, FramePublisher, RecorderConfig, RecorderThread

    RE = RunEngine({})  # noqa: N806
    with DocumentPublisher("tcp://127.0.0.1:0", block_when_full=True) as documents, \
            FramePublisher("tcp://127.0.0.1:0", block_when_full=True) as frames:  # fmt: skip
        xcs = sim_xcsct_beamline(sink=FrameSink(frames, run_directory=folder))
        calibration = folder / "calibration"
        calibration.mkdir()
        xcs.hexitec.write_calibration(calibration)
        np.save(calibration / "darks.npy", xcs.hexitec.simulator().dark_frames(500))
        recorder = RecorderThread(RecorderConfig(out_dir=folder, document_address=documents.address,
                                                 frame_address=frames.address, linger_s=0.5))  # fmt: skip
        documents.wait_for_subscribers(1, 30)
        frames.wait_for_subscribers(1, 30)
        RE.subscribe(documents)
        RE.subscribe(xcs.sink)
        protocol = parse_protocol("CC charge to 4.2 V at 1C", capacity_ah=xcs.potentiostat.battery.nominal_capacity_ah)
        RE(operando_xcsct(xcs.potentiostat, xcs.pco, xcs.hexitec, xcs.rotation, xcs.vertical, protocol=protocol,
                          n_projections=180, xcs_positions_mm=xcs.cathode_heights_mm(3), xct_exposure=0.02,
                          xcs_exposure=0.5, flats=10, darks=10, shutter=xcs.shutter, beam=xcs.beam,
                          sample_stage=xcs.translation, out_position=25.0, max_repeats=2))  # fmt: skip
        while not (recorder.recorder.closed_runs and recorder.recorder.idle):
            time.sleep(0.1)
        (path,) = recorder.stop().files.values()
    return path, calibration


def send(path: Path, documents, frames, *, batches: bool) -> str:
    """The run again, as fast as the receivers take it; HEXITEC batches whole or frame by frame.
    Returns the run's uid."""
    from streaming.store.runreader import RunFileReader

    with RunFileReader(path) as reader:
        run_uid = reader.run_uid
        for message in reader.messages():
            if message.document is not None:
                documents(*message.document)
                continue
            header, data = message.frame
            if batches or header.n_frames == 1:
                frames.send(header, data)
            else:
                for i in range(header.n_frames):
                    frames.send(header.frame_header(i), np.ascontiguousarray(data[i]))
    return run_uid


def recorder_rate(path: Path, folder: Path, *, batches: bool) -> float:
    from streaming import DocumentPublisher, FramePublisher
    from streaming.store.runreader import RunFileReader

    out = folder / f"recorded-{'batches' if batches else 'frames'}-{time.monotonic_ns()}"
    with DocumentPublisher("tcp://127.0.0.1:0", block_when_full=True) as documents, \
            FramePublisher("tcp://127.0.0.1:0", block_when_full=True) as frames:  # fmt: skip
        recorder = subprocess.Popen([sys.executable, "-m", "streaming.app.cli", "record", "--docs", documents.address,
                                     "--frames", frames.address, "--out", str(out), "--linger", "0.5"],
                                    stdout=subprocess.DEVNULL)  # fmt: skip
        documents.wait_for_subscribers(1, 60)
        frames.wait_for_subscribers(1, 60)
        run_uid = send(path, documents, frames, batches=batches)
        frames.wait_for_receipts(run_uid, timeout_s=300)  # the recorder closed the run's file
        recorder.send_signal(signal.SIGINT)
        recorder.wait(120)
    (again,) = out.glob("*.h5")
    with RunFileReader(again) as reader:
        group = reader.entry["instrument"]["hexitec"]
        recv = group["recv_time"][: reader.n_frames("hexitec")]
    return (recv.size - 1) / float(recv[-1] - recv[0])


def analysis_rate(path: Path, calibration: Path, folder: Path, *, batches: bool) -> float:
    from streaming import DocumentPublisher, FramePublisher
    from streaming.analysis.consumer import Consumer, ConsumerThread
    from streaming.app.analyses import default_analyses
    from streaming.app.config import load_config

    config = load_config(None, [f"out_dir={str(folder / 'analysed')!r}", f"xcsct.calibration_dir={str(calibration)!r}"])
    factory = default_analyses(config)["xcsct"]
    taken: list[tuple[float, int]] = []  # (time, HEXITEC frames) of every HEXITEC message the analysis takes

    def make(start):
        analysis = factory(start)
        if analysis is not None:
            original = analysis.frame

            def frame(message):
                original(message)
                if message.header.stream == "hexitec":
                    taken.append((time.perf_counter(), message.header.n_frames))

            analysis.frame = frame
        return analysis

    with DocumentPublisher("tcp://127.0.0.1:0", block_when_full=True) as documents, \
            FramePublisher("tcp://127.0.0.1:0", block_when_full=True) as frames:  # fmt: skip
        consumer = ConsumerThread(Consumer(make, document_address=documents.address, frame_address=frames.address,
                                           linger_s=0.5))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 30)
            frames.wait_for_subscribers(1, 30)
            send(path, documents, frames, batches=batches)
            while not consumer.consumer.finished:
                time.sleep(0.05)
        finally:
            consumer.stop(timeout_s=300)
    n_frames = sum(n for _, n in taken) - taken[0][1]  # frames after the first message's
    return n_frames / (taken[-1][0] - taken[0][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict = {"benchmark": "xcs_live", "machine": machine_description(), "detector_rate_hz": HEXITEC_HZ}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path, calibration = record_run(folder)
        for batches in (True, False):
            setting = "batches" if batches else "one_frame_a_message"
            recorder = statistics.median(recorder_rate(path, folder, batches=batches) for _ in range(args.repeats))
            analysis = statistics.median(analysis_rate(path, calibration, folder, batches=batches)
                                         for _ in range(args.repeats))  # fmt: skip
            results[setting] = {"recorder_frames_per_s": recorder, "analysis_frames_per_s": analysis,
                                "recorder_over_detector_rate": recorder / HEXITEC_HZ,
                                "analysis_over_detector_rate": analysis / HEXITEC_HZ}  # fmt: skip
            print(setting, {k: round(v, 2) for k, v in results[setting].items()}, flush=True)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
