"""The PV Access frame bridge against the direct frame channel, Pilatus3 X 2M frames on loopback.

- ``direct``: a sender process publishes frames on the frame channel (ZeroMQ), a subscriber
  process receives and validates them.
- ``pva``: a p4p server process posts the frames as NTNDArrays (as areaDetector's NDPluginPva
  does), a bridge process (:class:`streaming.app.bridge.PvaFrameBridge`) turns them into frame
  messages, the same subscriber process receives them: one more hop and one more copy.

Each twice: ``unpaced`` (as fast as they go: the throughput, frames/s received) and ``paced``
at the detector's 100 Hz (frames lost: PV Access squashes the updates a slow client has not
taken, the bridge counts them by ``uniqueId``). Figures are medians of ``--repeats`` runs,
ratios against ``direct`` of the same run. Results go to ``benchmarks/results/pva_bridge.json``.
Run: ``python -m benchmarks.benchmark_pva_bridge``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._machine import machine_description, write_results
from benchmarks.benchmark_recorder import PAPER_FRAME_RATE_HZ, detector_frames
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber

RESULTS = Path(__file__).parent / "results" / "pva_bridge.json"
LOOPBACK = "tcp://127.0.0.1:0"
PV = "BENCH:Pva1:Image"
RUN_UID = "bench-run"
SERVER_CONF = {"EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
               "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_PVAS_SERVER_PORT": "0",
               "EPICS_PVAS_BROADCAST_PORT": "0"}  # fmt: skip


def _receive(address: str, n_frames: int, out: mp.Queue) -> None:
    """Count frames until ``n_frames`` or 5 s of silence; time from the first."""
    with FrameSubscriber(address) as subscriber:
        out.put("ready")
        first = subscriber.recv(timeout_s=120)
        started = time.perf_counter()
        received, last = (1, started) if first is not None else (0, started)
        while received < n_frames and subscriber.recv(timeout_s=5) is not None:
            received += 1
            last = time.perf_counter()
        out.put((received, last - started))


def _rate(received: int, elapsed_s: float) -> float:
    """Frames/s from the first frame received to the last (0 if fewer than two came)."""
    return (received - 1) / elapsed_s if received > 1 and elapsed_s > 0 else 0.0


def _pace(index: int, started: float, rate_hz: float | None) -> None:
    if rate_hz:
        delay = started + index / rate_hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def _send_direct(address_out: mp.Queue, go: mp.Event, n_frames: int, rate_hz: float | None) -> None:
    images = detector_frames("pilatus", 4)
    with FramePublisher(LOOPBACK, block_when_full=rate_hz is None) as frames:
        address_out.put(frames.address)
        frames.wait_for_subscribers(1, timeout_s=120)
        go.wait(120)
        started = time.perf_counter()
        for i in range(n_frames):
            _pace(i, started, rate_hz)
            frames.publish("pilatus", images[i % len(images)], run_uid=RUN_UID, indices={"i": i})


def _serve_pva(conf_out: mp.Queue, go: mp.Event, n_frames: int, rate_hz: float | None) -> None:
    from p4p.nt import NTNDArray
    from p4p.server import Server
    from p4p.server.thread import SharedPV

    images = detector_frames("pilatus", 4)
    wrap = NTNDArray().wrap
    image = SharedPV(initial=wrap(np.zeros_like(images[0])))
    with Server(providers=[{PV: image}], conf=SERVER_CONF, useenv=False) as server:
        conf_out.put({key: value for key, value in server.conf().items() if key.startswith("EPICS_PVA_")})
        go.wait(120)
        started = time.perf_counter()
        for i in range(n_frames):
            _pace(i, started, rate_hz)
            value = wrap(images[i % len(images)], attrib={"index:i": i})
            value["uniqueId"] = i + 1
            now = time.time()
            value["timeStamp.secondsPastEpoch"], value["timeStamp.nanoseconds"] = int(now), int(now % 1 * 1e9)
            image.post(value)
        time.sleep(10)  # the bridge takes what is queued for it


def _bridge(pva_conf: dict, documents_address: str, address_out: mp.Queue, counts_out: mp.Queue,
            done: mp.Event) -> None:  # fmt: skip
    from streaming.app.bridge import PvaFrameBridge

    with FramePublisher(LOOPBACK, block_when_full=True) as frames:
        documents = DocumentSubscriber(documents_address)
        address_out.put(frames.address)
        bridge = PvaFrameBridge(PV, "pilatus", documents=documents, frames=frames, pva_conf=pva_conf).start()
        frames.wait_for_subscribers(1, timeout_s=120)
        stop = threading.Event()
        threading.Thread(target=lambda: (done.wait(600), stop.set()), daemon=True).start()
        bridge.run(stop)
        bridge.close()
        documents.close()
        counts_out.put(vars(bridge.counts))


def run_direct(n_frames: int, rate_hz: float | None) -> dict:
    context = mp.get_context("spawn")
    addresses, results, go = context.Queue(), context.Queue(), context.Event()
    sender = context.Process(target=_send_direct, args=(addresses, go, n_frames, rate_hz))
    sender.start()
    address = addresses.get(timeout=120)
    receiver = context.Process(target=_receive, args=(address, n_frames, results))
    receiver.start()
    assert results.get(timeout=120) == "ready"
    time.sleep(1.0)  # the subscription reaches the publisher
    go.set()
    received, elapsed = results.get(timeout=600)
    sender.join(60)
    receiver.join(60)
    return {"received": received, "lost": n_frames - received, "frames_per_s": _rate(received, elapsed)}


def run_pva(n_frames: int, rate_hz: float | None) -> dict:
    context = mp.get_context("spawn")
    confs, addresses, results, counts, go, done = (context.Queue(), context.Queue(), context.Queue(),
                                                   context.Queue(), context.Event(), context.Event())  # fmt: skip
    with DocumentPublisher(LOOPBACK) as documents:
        server = context.Process(target=_serve_pva, args=(confs, go, n_frames, rate_hz))
        server.start()
        pva_conf = confs.get(timeout=120)
        bridge = context.Process(target=_bridge, args=(pva_conf, documents.address, addresses, counts, done))
        bridge.start()
        address = addresses.get(timeout=120)
        receiver = context.Process(target=_receive, args=(address, n_frames, results))
        receiver.start()
        assert results.get(timeout=120) == "ready"
        documents.wait_for_subscribers(1, timeout_s=60)
        time.sleep(1.0)  # the bridge's PV Access subscription and the receiver's are up
        documents("start", {"uid": RUN_UID, "time": time.time()})
        time.sleep(0.5)
        go.set()
        received, elapsed = results.get(timeout=600)
        done.set()
        bridge_counts = counts.get(timeout=60)
        for process in (server, bridge, receiver):
            process.join(60)
    return {"received": received, "lost": n_frames - received, "frames_per_s": _rate(received, elapsed),
            "bridge": bridge_counts}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="Pilatus frames per run (9.9 MB each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict = {"benchmark": "pva_bridge", "machine": machine_description(), "frames": args.frames,
                     "frame_bytes": int(detector_frames("pilatus", 1)[0].nbytes), "repeats": args.repeats}  # fmt: skip
    for pacing, rate in (("unpaced", None), ("paced", PAPER_FRAME_RATE_HZ["pilatus"])):
        runs = {"direct": [], "pva": []}
        for _ in range(args.repeats):
            for path, run in (("direct", run_direct), ("pva", run_pva)):
                runs[path].append(run(args.frames, rate))
                print(pacing, path, runs[path][-1], flush=True)
        summary = {path: {"frames_per_s": statistics.median(r["frames_per_s"] for r in rs),
                          "lost": statistics.median(r["lost"] for r in rs), "runs": rs}
                   for path, rs in runs.items()}  # fmt: skip
        summary["pva_over_direct"] = summary["pva"]["frames_per_s"] / summary["direct"]["frames_per_s"]
        results[pacing] = summary
        print(f"{pacing}: direct {summary['direct']['frames_per_s']:.1f} frames/s (lost "
              f"{summary['direct']['lost']}), PV Access bridge {summary['pva']['frames_per_s']:.1f} frames/s "
              f"(lost {summary['pva']['lost']}): ratio {summary['pva_over_direct']:.2f}")  # fmt: skip
    write_results(args.out, results)


if __name__ == "__main__":
    main()
