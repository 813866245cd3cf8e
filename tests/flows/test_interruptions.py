"""Interruptions as they happen at a beamline, with ``operando record`` and ``operando consume``
running as processes beside the user's RunEngine script: a hard pause (two Ctrl-C) mid-line
and ``RE.resume()``. bluesky replays the messages since the line's checkpoint, so the line is
taken again from its start (before: the replayed fly move started wherever the pause had left
the motor, and the resumed plan aborted)."""

from __future__ import annotations

import itertools
import re
import subprocess

import h5py
import numpy as np
import pytest

from streaming.store.runreader import RunFileReader
from tests.conftest import wait_until
from tests.flows.conftest import OPERANDO, TINY, assert_same_xrdct, finish, launch, live_flow

N_TINY = 48 * 64


def test_a_hard_pause_mid_line_then_resume_completes_the_xrdct_scan(tmp_path):
    runs, results, analyzed = (tmp_path / name for name in ("runs", "results", "analyzed"))
    runs.mkdir()
    analysis = ["xrdct", "--out", str(results), *TINY]
    with live_flow(["tests.flows.live_xrdct", "tiny", str(runs), "2", "1000"], runs, analysis) as (script, consume):
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
    analysis = ["xcsct", "--out", str(results), "--set", f"xcsct.calibration_dir={str(calibration)!r}"]
    user = ["tests.flows.live_xcsct", str(calibration), str(runs), "2", "2", str(per_acquisition + 2000)]
    with live_flow(user, runs, analysis) as (script, consume):
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


def _streams(path) -> dict[str, list[dict]]:
    """A recorded run's events by stream name."""
    names, events = {}, {}
    with RunFileReader(path) as reader:
        for name, doc, *_ in reader.documents():
            if name == "descriptor":
                names[doc["uid"]] = doc["name"]
            elif name == "event":
                events.setdefault(names[doc["descriptor"]], []).append(doc)
    return events


def _values(events: list[dict], key: str) -> list[tuple[float, object]]:
    return sorted((event["timestamps"][key], event["data"][key]) for event in events)


def assert_suspended_through_the_dump(recorded, dump_s: float) -> None:
    """The ring current fell and came back after ``dump_s``; the shutter closed when it fell
    and opened only when it was back; the cell's capacity rose all the while."""
    events = _streams(recorded)
    ring = _values(events["ring_current_monitor"], "ring_current")
    (down, _), (up, _) = next((a, b) for a, b in itertools.pairwise(ring) if a[1] == 0.0 and b[1] > 0)
    assert dump_s - 5.0 < up - down <= dump_s + 1e-6  # seen at the clock's first step into the dump
    shutter = _values(events["shutter_status_monitor"], "shutter_status")
    closed_at = next(t for t, value in shutter if t >= down and value == "closed")
    assert closed_at - down < 2.0  # once the move or acquisition under way had ended
    assert not [t for t, value in shutter if closed_at < t < up and value == "open"]
    capacity = [value for t, value in _values(events["potentiostat"], "potentiostat_capacity") if down < t < up]
    rise = np.diff(capacity)  # a reading every 30 s, each higher than the last (a repeat at the resume)
    assert np.all(rise >= 0) and np.count_nonzero(rise > 0) >= dump_s / 30 - 2


def test_a_beam_dump_suspends_the_xrdct_series_while_the_cell_charges(tmp_path):
    """``operando demo xrdct`` with a 10 min beam dump 20 s into the series: the scan waits with
    the shutter closed while the potentiostat goes on charging, then goes on; every pattern of
    both scans arrives, at the right voltage and capacity."""
    done = subprocess.run([*OPERANDO, "demo", "xrdct", "--preset", "tiny", "--out", str(tmp_path), "--set",
                           "xrdct.n_scans=2", "--set", "beamline.beam_dump_at_s=20"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Suspension occurred" in done.stdout and "missing patterns" not in done.stdout
    (recorded,) = (p for p in tmp_path.glob("*.h5") if p.suffixes == [".h5"])
    with RunFileReader(recorded) as reader:
        summary = reader.summary()
        indices = reader.entry["instrument/pilatus/indices"]
        placed = {(s, a, t) for s, a, t in zip(indices["scan"][()], indices["angle"][()], indices["translation"][()],
                                               strict=True)}  # fmt: skip
    assert summary.exit_status == "success" and len(placed) == 2 * N_TINY
    assert_suspended_through_the_dump(recorded, 600.0)
    capacities = [float(c) for c in re.findall(r"scan \d at [\d.]+ V, ([\d.]+) mAh", done.stdout)]
    assert len(capacities) == 2 and capacities[0] > 20  # scan 0 came after 10 min of charging at C/2


def test_a_beam_dump_suspends_the_xcsct_run_while_the_cell_cycles(tmp_path):
    """``operando demo xcsct`` with a 10 min beam dump: the acquisition under way is taken
    again when the beam is back, and every result is complete."""
    done = subprocess.run([*OPERANDO, "demo", "xcsct", "--out", str(tmp_path), "--set", "xcsct.max_repeats=2",
                           "--set", "beamline.beam_dump_at_s=5", "--set",
                           "potentiostat.protocol='CC charge to 4.2 V at 1C'"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Suspension occurred" in done.stdout
    assert "XCT scans reduced: 2; XCS acquisitions: 6" in done.stdout
    (recorded,) = (p for p in tmp_path.glob("*.h5") if p.suffixes == [".h5"])
    assert_suspended_through_the_dump(recorded, 600.0)
    (sidecar,) = tmp_path.glob("*.xcs.h5")
    with h5py.File(sidecar, "r") as file:
        np.testing.assert_array_equal(file["entry/xcs/n_frames"][()], file["entry/xcs/n_frames_expected"][()])


def test_an_abort_mid_line_leaves_an_explicitly_partial_xrdct_result(tmp_path):
    """``RE.abort()`` after a hard pause mid-scan: the run closes cleanly with its exit status,
    and the live analysis writes what it has, marked partial, nothing interpolated and no
    reconstruction made of a third of a scan (before: two thirds of the sinogram were
    interpolated into a "result")."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    analysis = ["xrdct", "--out", str(results), *TINY]
    user = ["tests.flows.live_xrdct", "tiny", str(runs), "2", "1000", "abort"]
    with live_flow(user, runs, analysis) as (script, consume):
        finish(script, timeout_s=300)
        wait_until(lambda: any(results.glob("*.xrdct.h5")), timeout_s=120)  # made when the run is finished
    assert "aborting" in script.err
    (recorded,) = runs.glob("*.h5")
    with RunFileReader(recorded) as reader:
        summary = reader.summary()
    assert summary.complete and summary.exit_status == "abort"
    (sidecar,) = results.glob("*.xrdct.h5")
    with h5py.File(sidecar, "r") as file:
        xrdct = file["entry/xrdct"]
        placed = int(xrdct["filled"][()].sum())
        assert not xrdct.attrs["complete"] and xrdct.attrs["patterns_interpolated"] == 0
        assert xrdct.attrs["fraction_complete"] == pytest.approx(placed / N_TINY)
        assert xrdct.attrs["exit_status"] == "abort" and "reconstruction" not in xrdct
    assert 0 < placed < N_TINY
    assert re.search(r"scan 0: partial, \d+% of its patterns when the run ended; not reconstructed", consume.out)
