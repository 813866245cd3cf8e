"""An analysis that was not there from a run's start: ``operando consume`` started mid-run, and
the main job's analysis process killed mid-run (restarted once). Each catches up from the
recorder's SWMR file, then follows live; the result equals ``operando analyze`` of the run."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from streaming.store.runreader import RunFileReader
from tests.conftest import wait_until
from tests.flows.conftest import OPERANDO, ROOT, TINY, assert_same_xrdct, finish, launch, services, start


def _frames_recorded(runs: Path) -> int:
    for path in runs.glob("*.h5"):
        try:
            with RunFileReader(path) as reader:
                return reader.n_frames("pilatus") if "pilatus" in reader.streams else 0
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def _analysed_again(recorded: Path, out: Path) -> Path:
    done = launch([*OPERANDO, "analyze", str(recorded), "--out", str(out)])
    finish(done, timeout_s=600)
    assert done.returncode == 0, done.err[-3000:]
    return out


@pytest.mark.timeout(900)
def test_consume_started_mid_run_catches_up_from_the_file_and_equals_the_replayed_result(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    with services() as started:
        # the user's script waits for one receiver on each channel (the recorder), and after 300
        # frames for one more (the analysis started then, however long it takes to start)
        script = launch([sys.executable, "-m", "tests.flows.live_xrdct", "tiny", str(runs), "1",
                         "--late-receiver-after", "300"])  # fmt: skip
        started.append(script)
        documents, frames = script.first_line.split()
        started.append(start("record", "--docs", documents, "--frames", frames, "--out", str(runs)))
        wait_until(lambda: _frames_recorded(runs) >= 300, timeout_s=300)
        consume = start("consume", "xrdct", "--docs", documents, "--frames", frames, "--out", str(results), *TINY,
                        "--set", f"live.run_dir={str(runs)!r}")  # fmt: skip
        started.append(consume)
        finish(script, timeout_s=600)
        assert script.returncode == 0, script.err[-3000:]
        wait_until(lambda: any(results.glob("*.png")), timeout_s=600)
    assert consume.returncode == 0, consume.err[-3000:]
    assert "began before this analysis: catching up from" in consume.err
    (recorded,) = runs.glob("*.h5")
    with RunFileReader(recorded) as reader:
        (pilatus,) = reader.summary().streams
    report = re.search(r"frames: (\d+) live, (\d+) from the recorder's file, (\d+) lost to both", consume.out)
    assert report, consume.out
    live, from_file, lost = (int(n) for n in report.groups())
    assert from_file >= 300 and live > 0 and live + from_file == pilatus.n_frames and lost == 0
    (sidecar,) = results.glob("*.xrdct.h5")
    assert_same_xrdct(sidecar, _analysed_again(recorded, tmp_path / "analyzed") / sidecar.name)


def _demo_with_a_process_killed(out: Path, *settings: str, kill: int, n_spawned: int) -> tuple[int, str, str]:
    """``operando demo xrdct`` (tiny, one scan): once 300 frames are recorded, its ``kill``-th
    spawned process (of ``n_spawned``, in the order started) is killed. (exit code, stdout, stderr)."""
    demo = subprocess.Popen([*OPERANDO, "demo", "xrdct", "--preset", "tiny", "--set", "xrdct.n_scans=1",
                             *settings, "--no-dashboard", "-q", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out.mkdir(exist_ok=True)
        wait_until(lambda: _frames_recorded(out) >= 300, timeout_s=300)
        spawned = [child for child in psutil.Process(demo.pid).children() if "spawn_main" in " ".join(child.cmdline())]
        spawned.sort(key=lambda child: child.create_time())
        assert len(spawned) == n_spawned
        spawned[kill].send_signal(signal.SIGKILL)
        stdout, stderr = demo.communicate(timeout=600)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    return demo.returncode, stdout, stderr


@pytest.mark.timeout(900)
def test_the_main_job_restarts_a_killed_analysis_once_and_it_catches_up(tmp_path):
    out = tmp_path / "demo"
    # spawned in order: the recorder, then the analysis
    returncode, stdout, stderr = _demo_with_a_process_killed(out, kill=1, n_spawned=2)
    assert returncode == 0, stderr[-3000:]
    assert re.search(r"the xrdct analysis process died \(exit code -9\); restarted it, once", stderr), stderr[-3000:]
    (recorded,) = (path for path in out.glob("*.h5") if path.suffixes == [".h5"])
    (sidecar,) = out.glob("*.xrdct.h5")
    assert_same_xrdct(sidecar, _analysed_again(recorded, tmp_path / "analyzed") / sidecar.name)
    assert "frames:" in stdout


@pytest.mark.timeout(900)
def test_a_killed_integration_worker_costs_no_frame(tmp_path):
    """Two integration workers; one is killed mid-scan. The distributor hands the frames on to
    the other; those the dead one held come raw from the recorder's file to the builder."""
    out = tmp_path / "demo"
    # spawned in order: the recorder, the builder, the distributor, then the workers
    returncode, stdout, stderr = _demo_with_a_process_killed(out, "--set", "xrdct.workers=2", kill=3, n_spawned=5)
    assert returncode == 0, stderr[-3000:]
    report = re.search(r"frames: (\d+) live, (\d+) from the recorder's file, (\d+) lost to both", stdout)
    assert report, stdout[-3000:]
    live, from_file, lost = (int(n) for n in report.groups())
    (recorded,) = (path for path in out.glob("*.h5") if path.suffixes == [".h5"])
    with RunFileReader(recorded) as reader:
        n_frames = reader.n_frames("pilatus")
    assert lost == 0 and live + from_file == n_frames
    (sidecar,) = out.glob("*.xrdct.h5")
    assert_same_xrdct(sidecar, _analysed_again(recorded, tmp_path / "analyzed") / sidecar.name)
