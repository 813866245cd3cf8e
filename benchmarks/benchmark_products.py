"""The live products channel and the dashboard: latency, cost, and the time to the first picture.

1. **Latency**: a recorded XRD-CT scan of the ``small`` preset replayed at its recorded pace
   (a live scan) into the XRD-CT analysis, which publishes its products; a subscriber in this
   process (one clock) takes, for every diagnostics product (published last in each round),
   the time from the reception of the newest frame the products reflect to the product's
   reception: median and p99, with an ``operando dashboard`` connected.
2. **Cost**: the same scan replayed as fast as the analysis takes it, three times in turn:
   products off, products on with no receiver, and products on with an ``operando dashboard``
   connected and a page open in headless Chromium (when Debian's chromium is installed);
   frames/s of the analysis each, and the ratios.
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


def analyse(run: Path, folder: Path, *, products: bool, viewer: str | None, speed: float | None) -> dict:
    """Replay ``run`` into an XRD-CT consumer of this process; frames/s of its analysis and the
    products' latencies (s) measured by a subscriber of this process."""
    from streaming.analysis.consumer import Consumer, ConsumerThread
    from streaming.app.analyses import default_analyses
    from streaming.app.config import load_config
    from streaming.store.replay import ReplayConfig, replay
    from streaming.store.runreader import RunFileReader
    from streaming.wire.products import ProductPublisher, ProductSubscriber
    from streaming.wire.transport import DocumentPublisher, FramePublisher

    with RunFileReader(run) as reader:
        start = next(doc for name, doc, *_ in reader.documents() if name == "start")
        n_frames = sum(stream.n_frames for stream in reader.summary().streams)
    preset = start.get("simulation", {}).get("xrdct_preset", "small")
    config = load_config(None, [f"out_dir={str(folder)!r}", f"xrdct.preset={preset!r}"])
    factory = default_analyses(config)["xrdct"]
    latencies: list[float] = []
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        publisher = stack.enter_context(ProductPublisher("tcp://127.0.0.1:0")) if products else None
        documents = stack.enter_context(DocumentPublisher("tcp://127.0.0.1:0", block_when_full=True))
        frames = stack.enter_context(FramePublisher("tcp://127.0.0.1:0", block_when_full=True))
        watching = None
        if publisher is not None and viewer is not None:
            watching = stack.enter_context(dashboard(publisher.address, folder, viewer == "browser"))
            subscriber = ProductSubscriber(publisher.address)

            def measure() -> None:
                while not stop.is_set():
                    product = subscriber.recv(0.1)
                    received = time.time()
                    newest = product.values.get("newest_frame_received_s") if product is not None else None
                    if product is not None and product.name == "diagnostics" and newest is not None:
                        latencies.append(received - newest)
                subscriber.close()

            reader_thread = threading.Thread(target=measure, daemon=True)
            reader_thread.start()
        consumer = ConsumerThread(Consumer(factory, document_address=documents.address, frame_address=frames.address,
                                           paced_by_sender=speed is None, products=publisher))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, timeout_s=30)
            frames.wait_for_subscribers(1, timeout_s=30)
            started = time.perf_counter()
            with RunFileReader(run) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=speed))
            while not consumer.consumer.finished:
                time.sleep(0.01)
            seconds = time.perf_counter() - started
        finally:
            consumer.stop()
            stop.set()
            if watching is not None:
                reader_thread.join(5)
    result = {"frames": n_frames, "seconds": seconds, "frames_per_s": n_frames / seconds}
    if latencies:
        values = np.array(latencies)
        result.update(latency_median_s=float(np.median(values)), latency_p99_s=float(np.percentile(values, 99)),
                      latency_max_s=float(values.max()), n_products=int(values.size), viewer=watching)  # fmt: skip
    return result


def first_picture_s(folder: Path, timeout_s: float = 600.0) -> float:
    """Seconds from ``operando demo`` (defaults) starting to the first reconstruction on its
    products channel; the demo is stopped then."""
    from streaming.wire.products import ProductSubscriber

    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
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
        live = analyse(run, folder, products=True, viewer="browser", speed=1.0)
        print("latency", json.dumps(live), flush=True)
        variants = {"products_off": (False, None), "products_no_receiver": (True, None),
                    "products_dashboard": (True, "browser")}  # fmt: skip
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (products, viewer) in variants.items():
                runs[name].append(analyse(run, folder, products=products, viewer=viewer, speed=None))
                print(name, f"{runs[name][-1]['frames_per_s']:.0f} frames/s", flush=True)
        first = first_picture_s(folder / "demo")
        print(f"first picture after {first:.0f} s", flush=True)
    fps = {name: statistics.median(r["frames_per_s"] for r in results) for name, results in runs.items()}
    results = {
        "benchmark": "products",
        "machine": machine_description(),
        "run": str(run),
        "live_replay_at_recorded_pace": live,
        "latency_median_s": live.get("latency_median_s"),
        "latency_p99_s": live.get("latency_p99_s"),
        "analysis_frames_per_s": fps,
        "runs": runs,
        "ratio_dashboard_over_products_off": fps["products_dashboard"] / fps["products_off"],
        "ratio_products_no_receiver_over_products_off": fps["products_no_receiver"] / fps["products_off"],
        "first_picture_s_of_operando_demo": first,
    }
    print(json.dumps({k: v for k, v in results.items() if k not in ("machine", "runs")}, indent=1))
    write_results(args.out, results)


if __name__ == "__main__":
    main()
