"""Live, as a beamline user runs it: ``operando record``, ``operando consume xrdct`` and a
RunEngine script with default (non-blocking) publishers, three processes. The live analysis
must end with what ``operando analyze`` makes of the recorded file: every pattern, none
interpolated (before: 6.8 % of a tiny scan's patterns were dropped at its socket)."""

from __future__ import annotations

import re

import pytest

from streaming.store.runreader import RunFileReader
from tests.conftest import wait_until
from tests.flows.conftest import OPERANDO, assert_same_xrdct, finish, launch, live_flow


@pytest.mark.timeout(900)  # the small preset's scan is 19 200 frames, then analysed again
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_a_live_analysis_fed_by_default_publishers_equals_the_replayed_one(preset, tmp_path):
    runs, results, analyzed = (tmp_path / name for name in ("runs", "results", "analyzed"))
    runs.mkdir()
    analysis = ["xrdct", "--out", str(results), "--set", f"xrdct.preset={preset!r}"]
    with live_flow(["tests.flows.live_xrdct", preset, str(runs), "2"], runs, analysis) as (script, consume):
        finish(script, timeout_s=900)
        assert script.returncode == 0, script.err[-3000:]
        wait_until(lambda: any(results.glob("*.png")), timeout_s=600)  # written last
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


def test_xcsct_live_at_the_detectors_rate_keeps_every_frame(tmp_path):
    """The XCS-CT flow with default publishers: HEXITEC frames at 9118.87 Hz (a thousand to a
    message), PCO projections in bursts, a 1C charge. The recorder keeps every frame (before:
    half the HEXITEC frames and 100 of 400 projections were lost), and the live analysis
    reduces every XCT scan and reports the cathode's EMF (before: the XCT reduction raised,
    and the EMF was over the whole field)."""
    runs, results, calibration = (tmp_path / name for name in ("runs", "results", "calibration"))
    runs.mkdir()
    analysis = ["xcsct", "--out", str(results), "--set", f"xcsct.calibration_dir={str(calibration)!r}"]
    with live_flow(["tests.flows.live_xcsct", str(calibration), str(runs), "2"], runs, analysis) as (script, consume):
        finish(script, timeout_s=600)
        assert script.returncode == 0, script.err[-3000:]
        wait_until(lambda: any(results.glob("*.xcs.png")), timeout_s=300)  # written last
    (recorded,) = runs.glob("*.h5")
    with RunFileReader(recorded) as reader:
        streams = {s.name: s for s in reader.summary().streams}
    n_hexitec = 2 * 3 * round(0.5 * 9118.87)
    assert (streams["hexitec"].n_frames, streams["hexitec"].missing) == (n_hexitec, 0)
    assert (streams["pco"].n_frames, streams["pco"].missing) == (2 * (180 + 10 + 10), 0)
    assert "XCT scans reduced: 2; XCS acquisitions: 6" in consume.out
    assert len(re.findall(r"scan \d[^:]*: EMF \(cathode\) 0\.\d+ ± 0\.\d+ over 3 heights", consume.out)) == 2
    assert "Traceback" not in consume.err
