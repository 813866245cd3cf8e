"""The live products channel and the dashboard: latency, cost, and the time to the first picture.

1. **Latency**: a recorded XRD-CT scan of the ``small`` preset replayed at its recorded pace
   (a live scan) into ``operando consume xrdct`` (its own process, as live), which publishes
   its products; an ``operando dashboard`` and a Chromium page of it are connected. For every
   frame, the time from its sending here (its arrival there, on loopback) to the reception here
   of the first products that reflect it (the diagnostics product, published last in each
   round, counts the frames analysed): median and p99 over the frames. Also each round's
   freshness: from the reception of the newest frame it reflects to its reception here.
2. **Cost**: the same scan replayed as fast as the analysis takes it, four times in turn:
   products off, products on with no receiver, and products on with an ``operando dashboard``
   connected (the server alone, then with a page open in headless Chromium, when Debian's
   chromium is installed: the browser draws on the same two cores); frames/s of the analysis
   each, and the ratios.
3. **Time to the first picture**: ``operando demo`` started as a user starts it (the default
   ``small`` preset); seconds until the dashboard's channel carries the first reconstruction.

Results: ``benchmarks/results/products.json``.
Run: ``python -m benchmarks.benchmark_products [--run FILE]`` (~10 min on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks._machine import machine_description, write_results

RESULTS = Path(__file__).parent / "results" / "products.json"
OPERANDO = [sys.executable, "-m", "streaming.app.cli"]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def make_run(folder: Path, preset: str) -> Path:
    subprocess.run([*OPERANDO, "demo", "xrdct", "--preset", preset, "--set", "xrdct.n_scans=1", "--no-dashboard",
                    "-q", "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    (run,) = (path for path in folder.glob("*.h5") if path.suffixes == [".h5"])
    return run


@contextlib.contextmanager
def dashboard(products: str, folder: Path, with_browser: bool) -> Iterator[str]:
    """``operando dashboard`` on ``products``, and a Chromium page of it when asked and installed."""
    from streaming.app.dashboard import DashboardProcess

    process = DashboardProcess(products, folder / "dashboard.log", port=0)
    driver = None
    try:
        if with_browser and os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service

            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
                options.add_argument(argument)
            driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
            driver.get(process.url)
        yield "browser" if driver is not None else "server only"
    finally:
        if driver is not None:
            driver.quit()
        process.stop()


def analyse(run: Path, folder: Path, *, products: bool, viewer: str | None) -> dict:
    """Replay ``run`` as fast as it is taken into an XRD-CT consumer of this process (products
    on or off, a dashboard connected or not); frames/s of its analysis."""
    from streaming.analysis.consumer import Consumer, ConsumerThread
    from streaming.app.analyses import default_analyses
    from streaming.app.config import load_config
    from streaming.store.replay import ReplayConfig, replay
    from streaming.store.runreader import RunFileReader
    from streaming.wire.products import ProductPublisher
    from streaming.wire.transport import DocumentPublisher, FramePublisher

    with RunFileReader(run) as reader:
        start = next(doc for name, doc, *_ in reader.documents() if name == "start")
        n_frames = sum(stream.n_frames for stream in reader.summary().streams)
    preset = start.get("simulation", {}).get("xrdct_preset", "small")
    config = load_config(None, [f"out_dir={str(folder)!r}", f"xrdct.preset={preset!r}"])
    with contextlib.ExitStack() as stack:
        publisher = stack.enter_context(ProductPublisher("tcp://127.0.0.1:0")) if products else None
        documents = stack.enter_context(DocumentPublisher("tcp://127.0.0.1:0", block_when_full=True))
        frames = stack.enter_context(FramePublisher("tcp://127.0.0.1:0", block_when_full=True))
        watching = None
        if publisher is not None and viewer is not None:
            watching = stack.enter_context(dashboard(publisher.address, folder, viewer == "browser"))
        analysis = default_analyses(config)["xrdct"]
        consumer = ConsumerThread(Consumer(analysis, document_address=documents.address, frame_address=frames.address,
                                           paced_by_sender=True, products=publisher))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, timeout_s=30)
            frames.wait_for_subscribers(1, timeout_s=30)
            started = time.perf_counter()
            with RunFileReader(run) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            while not consumer.consumer.finished:
                time.sleep(0.01)
            seconds = time.perf_counter() - started
        finally:
            consumer.stop()
    return {"frames": n_frames, "seconds": seconds, "frames_per_s": n_frames / seconds, "viewer": watching}


def live_latency(run: Path, folder: Path) -> dict:
    """Latencies (s) of the products of ``operando consume xrdct`` fed ``run`` at its recorded pace."""
    from streaming.store.replay import ReplayConfig, replay
    from streaming.store.runreader import RunFileReader
    from streaming.wire.products import ProductSubscriber
    from streaming.wire.transport import DocumentPublisher, FramePublisher

    with RunFileReader(run) as reader:
        start = next(doc for name, doc, *_ in reader.documents() if name == "start")
    preset = start.get("simulation", {}).get("xrdct_preset", "small")
    products = f"tcp://127.0.0.1:{_free_port()}"
    rounds: list[tuple[float, int, float]] = []  # (received here, frames analysed, newest frame's reception)
    sent_s: list[float] = []
    stop = threading.Event()
    with (
        DocumentPublisher("tcp://127.0.0.1:0") as documents,
        FramePublisher("tcp://127.0.0.1:0") as frames,
    ):
        send = frames.send

        def send_and_note(header, data) -> None:
            send(header, data)
            sent_s.extend([time.time()] * header.n_frames)

        frames.send = send_and_note
        consume = subprocess.Popen([*OPERANDO, "consume", "xrdct", "--docs", documents.address, "--frames",
                                    frames.address, "--out", str(folder / "live"), "--set", f"xrdct.preset={preset!r}",
                                    "--set", f"live.products={products!r}"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            consume.stdout.readline()  # it listens
            with dashboard(products, folder, with_browser=True) as viewer:
                subscriber = ProductSubscriber(products)

                def measure() -> None:
                    while not stop.is_set():
                        product = subscriber.recv(0.1)
                        received = time.time()
                        newest = product.values.get("newest_frame_received_s") if product is not None else None
                        if product is not None and product.name == "diagnostics" and newest is not None:
                            rounds.append((received, int(product.values["frames_analysed"]), newest))
                    subscriber.close()

                measuring = threading.Thread(target=measure, daemon=True)
                measuring.start()
                documents.wait_for_subscribers(1, timeout_s=60)
                frames.wait_for_subscribers(1, timeout_s=60)
                with RunFileReader(run) as reader:
                    replay(reader, documents, frames, ReplayConfig(speed=1.0))
                stop.set()
                measuring.join(5)
        finally:
            consume.send_signal(signal.SIGINT)
            consume.communicate(timeout=300)
    per_frame, done = [], 0
    for received, analysed, _ in rounds:  # the frames first counted in this round: their latency
        per_frame.extend(received - t for t in sent_s[done:analysed])
        done = max(done, analysed)
    values, freshness = np.array(per_frame), np.array([received - newest for received, _, newest in rounds])
    return {
        "frame_to_product_median_s": float(np.median(values)),
        "frame_to_product_p99_s": float(np.percentile(values, 99)),
        "frame_to_product_max_s": float(values.max()),
        "frames_measured": int(values.size),
        "frames_sent": len(sent_s),
        "round_freshness_median_s": float(np.median(freshness)),
        "round_freshness_p99_s": float(np.percentile(freshness, 99)),
        "rounds": len(rounds),
        "viewer": viewer,
    }


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_picture_s(folder: Path, timeout_s: float = 600.0) -> float:
    """Seconds from ``operando demo`` (defaults) starting to the first reconstruction on its
    products channel; the demo is stopped then."""
    from streaming.wire.products import ProductSubscriber

    address = f"tcp://127.0.0.1:{_free_port()}"
    subscriber = ProductSubscriber(address)
    started = time.monotonic()
    command = [*OPERANDO, "demo", "--set", f"live.products={address!r}", "--dashboard-port", "0", "--out",
               str(folder), "-q"]  # fmt: skip
    demo = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - started < timeout_s and demo.poll() is None:
            product = subscriber.recv(0.2)
            if product is not None and product.name.startswith("xrdct.scan@") and "reconstruction" in product.arrays:
                return time.monotonic() - started
        raise RuntimeError("no reconstruction on the products channel")
    finally:
        subscriber.close()
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a recorded XRD-CT run (default: one scan made with the main job)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        run = args.run or make_run(folder / "run", args.preset)
        live = live_latency(run, folder)
        print("latency", json.dumps(live), flush=True)
        variants = {"products_off": (False, None), "products_no_receiver": (True, None),
                    "products_dashboard_server": (True, "server"), "products_dashboard": (True, "browser")}  # fmt: skip
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (products, viewer) in variants.items():
                runs[name].append(analyse(run, folder, products=products, viewer=viewer))
                print(name, f"{runs[name][-1]['frames_per_s']:.0f} frames/s", flush=True)
        first = first_picture_s(folder / "demo")
        print(f"first picture after {first:.0f} s", flush=True)
    fps = {name: statistics.median(r["frames_per_s"] for r in results) for name, results in runs.items()}
    results = {
        "benchmark": "products",
        "machine": machine_description(),
        "run": str(run),
        "live_consume_at_recorded_pace": live,
        "latency_median_s": live["frame_to_product_median_s"],
        "latency_p99_s": live["frame_to_product_p99_s"],
        "analysis_frames_per_s": fps,
        "runs": runs,
        "ratio_dashboard_over_products_off": fps["products_dashboard"] / fps["products_off"],
        "ratio_products_no_receiver_over_products_off": fps["products_no_receiver"] / fps["products_off"],
        "ratio_dashboard_server_only_over_products_off": fps["products_dashboard_server"] / fps["products_off"],
        "first_picture_s_of_operando_demo": first,
    }
    print(json.dumps({k: v for k, v in results.items() if k not in ("machine", "runs")}, indent=1))
    write_results(args.out, results)


if __name__ == "__main__":
    main()
