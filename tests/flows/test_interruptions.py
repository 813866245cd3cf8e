"""Interruptions as they happen at a beamline, with ``operando record`` and ``operando consume``
running as processes beside the user's RunEngine script: a hard pause (two Ctrl-C) mid-line
and ``RE.resume()``. bluesky replays the messages since the line's checkpoint, so the line is
taken again from its start (before: the replayed fly move started wherever the pause had left
the motor, and the resumed plan aborted)."""

from __future__ import annotations

import re
import sys

import h5py
import numpy as np

from streaming.store.runreader import RunFileReader
from tests.conftest import wait_until
from tests.flows.conftest import OPERANDO, TINY, assert_same_xrdct, finish, launch, services, start

N_TINY = 48 * 64


def test_a_hard_pause_mid_line_then_resume_completes_the_xrdct_scan(tmp_path):
    runs, results, analyzed = (tmp_path / name for name in ("runs", "results", "analyzed"))
    runs.mkdir()
    with services() as started:
        script = launch([sys.executable, "-m", "tests.flows.live_xrdct", "tiny", str(runs), "2", "1000"])
        started.append(script)
        documents, frames = script.first_line.split()
        started.append(start("record", "--docs", documents, "--frames", frames, "--out", str(runs)))
        consume = start("consume", "xrdct", "--docs", documents, "--frames", frames, "--out", str(results), *TINY)
        started.append(consume)
        finish(script, timeout_s=300)
        wait_until(lambda: any(results.glob("*.png")), timeout_s=300)
    assert script.returncode == 0 and "paused (paused); resuming" in script.err, script.err[-3000:]
    (recorded,) = runs.glob("*.h5")
    with RunFileReader(recorded) as reader:
        summary = reader.summary()
        attempts = reader.entry["instrument/pilatus/indices/attempt"][()]
    (pilatus,) = summary.streams
    assert summary.complete and summary.exit_status == "success"
    # the line under way was taken again: its first frames are kept, and marked
    retaken = int((attempts == 1).sum())
    assert pilatus.n_frames == N_TINY + retaken and retaken == 64 and pilatus.missing == 0
    (sidecar,) = results.glob("*.xrdct.h5")
    with h5py.File(sidecar, "r") as file:
        assert file["entry/xrdct"].attrs["patterns_replaced"] == retaken
        assert file["entry/xrdct/filled"][()].all()
    assert re.search(rf"{retaken} patterns taken again \(a re-run line\) used", consume.out)
    done = launch([*OPERANDO, "analyze", str(recorded), "--out", str(analyzed)])
    finish(done, timeout_s=300)
    assert done.returncode == 0, done.err[-3000:]
    assert_same_xrdct(sidecar, analyzed / sidecar.name)


def test_a_hard_pause_mid_acquisition_then_resume_completes_the_xcsct_run(tmp_path):
    runs, results, calibration = (tmp_path / name for name in ("runs", "results", "calibration"))
    runs.mkdir()
    per_acquisition = round(0.5 * 9118.87)
    with services() as started:
        script = launch([sys.executable, "-m", "tests.flows.live_xcsct", str(calibration), str(runs), "2", "2",
                         str(per_acquisition + 2000)])  # fmt: skip
        started.append(script)
        documents, frames = script.first_line.split()
        started.append(start("record", "--docs", documents, "--frames", frames, "--out", str(runs)))
        consume = start("consume", "xcsct", "--docs", documents, "--frames", frames, "--out", str(results),
                        "--set", f"xcsct.calibration_dir={str(calibration)!r}")  # fmt: skip
        started.append(consume)
        finish(script, timeout_s=300)
        wait_until(lambda: any(results.glob("*.xcs.png")), timeout_s=300)
    assert script.returncode == 0 and "paused (paused); resuming" in script.err, script.err[-3000:]
    assert "XCT scans reduced: 2; XCS acquisitions: 6" in consume.out
    (sidecar,) = results.glob("*.xcs.h5")
    with h5py.File(sidecar, "r") as file:  # the acquisition taken again counts once, whole
        used, expected = file["entry/xcs/n_frames"][()], file["entry/xcs/n_frames_expected"][()]
    np.testing.assert_array_equal(used, expected)
    (recorded,) = runs.glob("*.h5")
    with RunFileReader(recorded) as reader:
        streams = {s.name: s for s in reader.summary().streams}
        attempts = reader.entry["instrument/hexitec/indices/attempt"][()]
    retaken = int((attempts > 0).sum())  # the acquisition under way, taken again whole (and marked)
    assert retaken == per_acquisition and streams["hexitec"].missing == 0
    assert streams["hexitec"].n_frames == 2 * 3 * per_acquisition + retaken
