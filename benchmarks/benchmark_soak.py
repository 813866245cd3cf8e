"""Soak: a long simulated operando experiment, every process watched for growth.

``operando demo all`` as a user runs it (its recorder, its live analyses and its dashboard in
processes of their own), made long: ``--xrdct-scans`` tiny XRD-CT scans, then ``--xcsct-pairs``
XCT/XCS pairs, on the simulated clock (the defaults take about 35 minutes of wall time and
40 GB of disk on the 2-core machine). Every ``--every`` seconds each process of the tree is
sampled: resident memory, open file descriptors, open sockets. Per process the result gives
the fitted memory slope (MB/h, after a warm-up), and per mode the slope over the mode's second
half; descriptors and sockets at its start and end; for the experiment, the frames recorded,
the frames lost (the recorder's gaps, and what the analyses report as lost to both the wire
and the file) and each analysis' receive buffer peak.

The simulated clock makes frames faster than the 2 cores analyse them: an analysis falls
behind and its receive buffer (``live.buffer_mb``) and the ZeroMQ queues on both ends
(``DEFAULT_FRAME_HWM`` messages) fill during the first minutes of a mode. They are bounded:
that is a step, and the second half's slope tells a step from growth.

Not a CI test (half an hour or more). Results go to ``benchmarks/results/soak.json``.
Run: ``python -m benchmarks.benchmark_soak``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks._machine import machine_description, write_results
from streaming.store.runreader import RunFileReader

RESULTS = Path(__file__).parent / "results" / "soak.json"
ROOT = Path(__file__).resolve().parents[1]
WARM_UP_FRACTION = 0.1  # of a process's life, left out of its memory slope (imports, caches, first scan)


def _role(process: psutil.Process, demo_pid: int, spawned_order: dict[int, int]) -> str:
    if process.pid == demo_pid:
        return "demo (plans, RunEngine, detectors)"
    command = " ".join(process.cmdline())
    if "dashboard" in command:
        return "dashboard"
    if "spawn_main" in command:
        index = spawned_order.setdefault(process.pid, len(spawned_order))
        return ("recorder", "xrdct analysis", "xcsct analysis")[index] if index < 3 else f"spawned #{index}"
    return f"{process.name()} {process.pid}"


class Sampler:
    """Samples the demo's process tree every ``every_s`` seconds in a thread."""

    def __init__(self, demo_pid: int, every_s: float, *, disk: Path, min_free_bytes: float) -> None:
        self.demo = psutil.Process(demo_pid)
        self.every_s = every_s
        self.disk, self.min_free_bytes, self.disk_short = disk, min_free_bytes, False
        self.samples: dict[str, list[tuple[float, float, int, int]]] = {}  # role -> (t s, rss MB, fds, sockets)
        self._spawned: dict[int, int] = {}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                tree = [self.demo, *self.demo.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            if shutil.disk_usage(self.disk).free < self.min_free_bytes:  # the run files fill the disk
                self.disk_short = True
                self.demo.terminate()
                return
            now = time.monotonic() - self._started
            for process in sorted(tree, key=lambda p: p.pid):
                try:
                    with process.oneshot():
                        role = _role(process, self.demo.pid, self._spawned)
                        sample = (now, process.memory_info().rss / 1e6, process.num_fds(),
                                  len(process.net_connections(kind="inet")))  # fmt: skip
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.samples.setdefault(role, []).append(sample)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _slope(times: np.ndarray, rss: np.ndarray) -> tuple[float, float]:
    """Fitted RSS slope (MB/h) and the residuals' spread (MB), after the warm-up."""
    steady = times >= times[0] + WARM_UP_FRACTION * (times[-1] - times[0])
    if steady.sum() < 3:
        return float("nan"), float("nan")
    fit = np.polyfit(times[steady], rss[steady], 1)
    return float(fit[0]) * 3600, float((rss[steady] - np.polyval(fit, times[steady])).std())


def _summary(samples: list[tuple[float, float, int, int]], phases: dict[str, tuple[float, float]]) -> dict:
    """One process's samples: over its life, and over each phase of the experiment it lived
    through (its memory may step up when the next mode's simulators start: a step, not growth)."""
    times, rss, fds, sockets = (np.array(column) for column in zip(*samples, strict=True))
    slope_mb_per_h, noise_mb = _slope(times, rss)
    per_phase = {}
    for phase, (begin, end) in phases.items():
        inside = (times >= begin) & (times <= end)
        if inside.sum() >= 6:
            slope, noise = _slope(times[inside], rss[inside])
            # the second half: after the receive buffers and queues of a lagging analysis have
            # filled (they are bounded, and fill at the start of a mode)
            second = inside & (times >= (begin + end) / 2)
            settled = _slope(times[second], rss[second])[0] if second.sum() >= 6 else float("nan")
            per_phase[phase] = {"from_s": begin, "to_s": end, "rss_slope_MB_per_h": slope, "rss_noise_MB": noise,
                                "rss_slope_second_half_MB_per_h": settled,
                                "rss_MB_first_last": [float(rss[inside][0]), float(rss[inside][-1])],
                                "rss_MB_peak": float(rss[inside].max())}  # fmt: skip
    steady = times >= times[0] + WARM_UP_FRACTION * (times[-1] - times[0])
    return {
        "alive_s": float(times[-1] - times[0]), "n_samples": len(samples),
        "rss_MB": {"first": float(rss[0]), "after_warm_up": float(rss[steady][0]), "last": float(rss[-1]),
                   "peak": float(rss.max())},
        "rss_slope_MB_per_h": slope_mb_per_h, "rss_noise_MB": noise_mb,
        "growth_over_noise_in_1h": abs(slope_mb_per_h) / max(noise_mb, 1e-3),
        "fds": {"first": int(fds[0]), "last": int(fds[-1]), "max": int(fds.max())},
        "sockets": {"first": int(sockets[0]), "last": int(sockets[-1]), "max": int(sockets.max())},
        "phases": per_phase,
        "trace": [[round(t, 1), round(m, 1), int(f), int(s)] for t, m, f, s in samples[:: max(1, len(samples) // 200)]],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--xrdct-scans", type=int, default=40, help="tiny XRD-CT scans (about 20 s and 150 MB "
                        "each here)")  # fmt: skip
    parser.add_argument("--xcsct-pairs", type=int, default=3500, help="XCT/XCS pairs (60 projections, one XCS "
                        "height; 3 a second and 8 MB each here at the default exposure)")  # fmt: skip
    parser.add_argument("--xcs-exposure-s", type=float, default=0.1, help="seconds of HEXITEC frames (9.1 kHz) "
                        "per pair: the disk's rate (0.5 s: 3 GB a minute here)")  # fmt: skip
    parser.add_argument("--min-free-gb", type=float, default=5.0, help="stop the experiment (and fail) below this "
                        "much free disk")  # fmt: skip
    parser.add_argument("--every", type=float, default=5.0, metavar="S", help="sampling interval")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cycle = "CC charge to 4.2 V at C/2; CC discharge to 2.75 V at C/2"  # three of them: ~12 h of the cell's time
    settings = [f"xrdct.n_scans={args.xrdct_scans}", "xrdct.interval_s=180", f"xcsct.max_repeats={args.xcsct_pairs}",
                "xcsct.interval_s=10", "xcsct.n_projections=60", "xcsct.xcs_positions=1", "xcsct.flats=5",
                f"xcsct.xcs_exposure_s={args.xcs_exposure_s}",
                "xcsct.darks=5", f"potentiostat.protocol='{cycle}; {cycle}; {cycle}'"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "soak"
        overrides = [part for setting in settings for part in ("--set", setting)]
        command = [sys.executable, "-m", "streaming.app.cli", "demo", "all", "--preset", "tiny", "-q",
                   "--dashboard-port", "0", "--out", str(out), *overrides]  # fmt: skip
        started = time.monotonic()
        demo = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = Sampler(demo.pid, args.every, disk=out.parent, min_free_bytes=args.min_free_gb * 1e9)
        stdout, stderr = demo.communicate()
        duration_s = time.monotonic() - started
        sampler.stop()
        failure = None
        if sampler.disk_short:
            failure = f"stopped: under {args.min_free_gb} GB free in {out.parent} (fewer scans or pairs)"
        elif demo.returncode != 0:
            failure = f"the soak's demo failed ({demo.returncode}): {stderr[-3000:]}"
        recorded, missing = 0, 0
        files_mb = sum(path.stat().st_size for path in out.rglob("*.h5")) / 1e6
        for path in out.glob("*.h5"):
            if path.suffixes != [".h5"]:
                continue  # an analysis' results
            with RunFileReader(path) as reader:
                for stream in reader.summary().streams:
                    recorded += stream.n_frames
                    missing += stream.missing
        phases = {
            mode: (samples[0][0], samples[-1][0])
            for mode in ("xrdct", "xcsct")
            if (samples := sampler.samples.get(f"{mode} analysis"))
        }  # the analysis process's life: the mode's
        reports = re.findall(r"frames: (\d+) live, (\d+) from the recorder's file, (\d+) lost to both"
                             r"(?:; receive buffer peak (\d+) frames \((\d+) MB\))?", stdout)  # fmt: skip
    results = {
        "benchmark": "soak", "machine": machine_description(), "command": " ".join(command[2:]),
        "duration_s": duration_s, "frames_recorded": recorded, "frames_missing_in_run_files": missing,
        "files_MB": files_mb,
        "analyses": [{"live": int(a), "from_file": int(b), "lost": int(c), "receive_buffer_peak_frames": int(d or 0),
                      "receive_buffer_peak_MB": int(e or 0)} for a, b, c, d, e in reports],
        "frames_lost": missing + sum(int(c) for _, _, c, *_ in reports), "sampling_interval_s": args.every,
        "warm_up_fraction": WARM_UP_FRACTION,
        "phases": phases,
        "processes": {role: _summary(samples, phases) for role, samples in sampler.samples.items()
                      if len(samples) >= 3},
        "failure": failure,
    }  # fmt: skip
    for role, figures in results["processes"].items():
        by_phase = ", ".join(
            f"{phase} {values['rss_slope_MB_per_h']:+.1f}, second half {values['rss_slope_second_half_MB_per_h']:+.1f}"
            for phase, values in figures["phases"].items()
        )
        print(f"{role:36s} {figures['alive_s'] / 60:5.1f} min  RSS {figures['rss_MB']['after_warm_up']:7.1f} -> "
              f"{figures['rss_MB']['last']:7.1f} MB, slope {figures['rss_slope_MB_per_h']:+7.1f} MB/h ({by_phase}; "
              f"noise {figures['rss_noise_MB']:.1f} MB)  fds {figures['fds']['first']} -> {figures['fds']['last']}  "
              f"sockets {figures['sockets']['first']} -> {figures['sockets']['last']}")  # fmt: skip
    print(f"{duration_s / 60:.1f} min, {recorded} frames recorded, {results['frames_lost']} lost")
    write_results(args.out, results)
    if failure is not None:  # what was sampled is kept, and the run says why it is not a result
        sys.exit(failure)


if __name__ == "__main__":
    main()
