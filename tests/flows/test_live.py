"""Live, as a beamline user runs it: ``operando record``, ``operando consume xrdct`` and a
RunEngine script with default (non-blocking) publishers, three processes. The live analysis
must end with what ``operando analyze`` makes of the recorded file: every pattern, none
interpolated (before: 6.8 % of a tiny scan's patterns were dropped at its socket)."""

from __future__ import annotations

import re
import sys

import pytest

from streaming.store.runreader import RunFileReader
from tests.conftest import wait_until
from tests.flows.conftest import OPERANDO, assert_same_xrdct, finish, launch, services, start


@pytest.mark.timeout(900)  # the small preset's scan is 19 200 frames, then analysed again
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_a_live_analysis_fed_by_default_publishers_equals_the_replayed_one(preset, tmp_path):
    runs, results, analyzed = (tmp_path / name for name in ("runs", "results", "analyzed"))
    runs.mkdir()
    with services() as started:
        script = launch([sys.executable, "-m", "tests.flows.live_xrdct", preset, str(runs), "2"])
        started.append(script)
        documents, frames = script.first_line.split()
        started.append(start("record", "--docs", documents, "--frames", frames, "--out", str(runs)))
        consume = start("consume", "xrdct", "--docs", documents, "--frames", frames, "--out", str(results),
                        "--set", f"xrdct.preset={preset!r}")  # fmt: skip
        started.append(consume)
        finish(script, timeout_s=900)
        assert script.returncode == 0, script.err[-3000:]
        wait_until(lambda: any(results.glob("*.png")), timeout_s=600)  # written last
    assert all(service.returncode == 0 for service in started), [s.err[-2000:] for s in started if s.returncode]
    (recorded,) = runs.glob("*.h5")
    with RunFileReader(recorded) as reader:
        (pilatus,) = reader.summary().streams
    assert pilatus.missing == 0  # the system of record has every frame
    report = re.search(r"frames: (\d+) live, (\d+) from the recorder's file, (\d+) lost to both", consume.out)
    assert report, consume.out
    live, backfilled, lost = (int(n) for n in report.groups())
    assert live + backfilled == pilatus.n_frames and lost == 0
    assert "missing" not in consume.err
    done = launch([*OPERANDO, "analyze", str(recorded), "--out", str(analyzed)])
    finish(done, timeout_s=900)
    assert done.returncode == 0, done.err[-3000:]
    (sidecar,) = results.glob("*.xrdct.h5")
    assert_same_xrdct(sidecar, analyzed / sidecar.name)
