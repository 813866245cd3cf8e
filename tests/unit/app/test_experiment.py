"""The main job end to end: ``operando demo all --preset tiny`` as a user types it (a real
process: plans under its RunEngine, recorder, live analyses), and every group of DESIGN.md's
HDF5 contract in what it leaves, with values a scientist would accept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from simulators.xrdct_presets import PRESETS, WAVELENGTH_ANGSTROM

# the demo runs ~100 s on an idle 2-core machine; the suite's 120 s per test is too close
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[dict[str, Path], str]:
    """The run files by plan name, and what the demo printed."""
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "streaming.app.cli", "demo", "all", "--preset", "tiny",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {}
    for path in out.glob("*.h5"):
        if path.name.count(".") == 1:  # run files; the analyses' sidecars are <run>.<analysis>.h5
            with h5py.File(path, "r") as file:
                runs[file["entry"].attrs["plan_name"]] = path
    assert set(runs) == {"operando_xrdct", "operando_xcsct"}
    return runs, done.stdout


def test_the_demo_prints_where_its_files_are_and_the_key_numbers(demo):
    runs, printed = demo
    for path, sidecars in ((runs["operando_xrdct"], (".xrdct.h5",)), (runs["operando_xcsct"], (".xcs.h5", ".xct.h5"))):
        assert str(path) in printed and all(str(path.with_suffix(suffix)) in printed for suffix in sidecars)
    # per XRD-CT scan: the cell's state, the centre of rotation and the mean NMC c
    scans = re.findall(r"scan (\d) at ([\d.]+) V, ([\d.]+) mAh: centre of rotation ([\d.]+) px; mean NMC532_c ([\d.]+)",
                       printed)  # fmt: skip
    assert [s[0] for s in scans] == ["0", "1"]
    assert all(14.2 < float(s[4]) < 14.6 and 25 < float(s[3]) < 39 for s in scans)
    # per XCS-CT scan: the cathode's EMF with its sigma
    emf = re.findall(r"EMF \(cathode\) ([\d.]+) ± ([\d.]+)", printed)
    assert len(emf) == 4 and all(0.6 < float(value) < 0.95 and 0 < float(sigma) < 0.01 for value, sigma in emf)
    assert "potentiostat_voltage" in printed  # the live table


def test_the_run_files_hold_every_group_of_the_contract(demo):
    runs, _ = demo
    for plan, detectors in (("operando_xrdct", ("pilatus",)), ("operando_xcsct", ("pco", "hexitec"))):
        with h5py.File(runs[plan], "r") as file:
            entry = file["entry"]
            names = [bytes(n).decode() if not isinstance(n, str) else n for n in entry["documents/name"][()]]
            assert names[0] == "start" and names[-1] == "stop" and "stream_datum" in names
            for detector in detectors:
                instrument = entry[f"instrument/{detector}"]
                n = instrument["data"].shape[0]
                assert n > 0 and instrument["sequence"].shape == instrument["timestamp"].shape == (n,)
                np.testing.assert_array_equal(instrument["sequence"][()], np.arange(n))
                assert len(instrument["positions"]) > 0
                diagnostics = entry[f"diagnostics/{detector}"]
                assert diagnostics["received"][()] == n and diagnostics["missing"][()] == 0
            cycling = entry["potentiostat"]
            assert {"time", "voltage", "current", "capacity", "mode", "step"} <= set(cycling)
            assert cycling["voltage"].attrs["units"] == "V" and np.all(np.diff(cycling["time"][()]) >= 0)
            voltage = cycling["voltage"][()]
            assert np.all((voltage >= 2.5) & (voltage <= 4.2 + 1e-9))  # the cell's window, never past 4.2 V
            charging = cycling["mode"][()] == b"constant_current"
            assert charging.sum() >= 3 and np.all(np.diff(voltage[charging]) > 0)


def test_the_xrdct_results_are_sane(demo):
    runs, _ = demo
    preset = PRESETS["tiny"]
    n_angles, n_translations, n_radial = preset.n_angles, preset.n_translations, preset.n_radial
    with h5py.File(runs["operando_xrdct"], "r") as file:
        assert file["entry/instrument/pilatus/data"].shape[0] == 2 * n_angles * n_translations
        xrdct = file["entry/xrdct"]  # through the run file's external link
        assert xrdct["sinogram"].shape == (2, n_angles, n_translations, n_radial)
        assert xrdct["reconstruction"].shape == (2, n_translations, n_translations, n_radial)
        radial, angles = xrdct["radial"][()], xrdct["angles"][()]
        assert radial.shape == (n_radial,) and np.all(np.diff(radial) > 0) and xrdct["radial"].attrs["units"] == "deg"
        assert angles[0] == 0 and angles[-1] < 180 and xrdct["translations"].shape == (n_translations,)
        assert list(xrdct.attrs["trim_percentiles"]) == [5.0, 95.0]
        assert xrdct.attrs["wavelength_angstrom"] == pytest.approx(WAVELENGTH_ANGSTROM)
        centres = xrdct["center_of_rotation_px"][()]
        assert np.all(np.abs(centres - (n_translations - 1) / 2) < 3)
        assert {"Fe", "Al", "Cu", "NMC532", "graphite"} <= set(xrdct["phase_maps"])
        c_maps = xrdct["lattice_maps/NMC532_c"][()]
        assert np.nanmedian(c_maps) == pytest.approx(14.4, abs=0.15)
        # charged between the scans: the voltage rose, and the cathode's c with it
        assert xrdct["voltage"][1] > xrdct["voltage"][0] and xrdct["capacity"][1] > xrdct["capacity"][0]
        assert xrdct["mean_NMC532_c"][1] > xrdct["mean_NMC532_c"][0]


def test_the_xcsct_results_are_sane(demo):
    runs, _ = demo
    with h5py.File(runs["operando_xcsct"], "r") as file:
        entry = file["entry"]
        assert entry["instrument/pco/data"].shape[0] == 4 * (10 + 10 + 180)
        assert entry["instrument/hexitec/data"].shape[0] == 4 * 3 * round(0.5 * 9118.87)
        xcs = entry["xcs"]
        energy = xcs["energy"][()]
        assert energy[0] == 0 and energy[-1] == pytest.approx(200) and xcs["energy"].attrs["units"] == "keV"
        assert xcs["spectra"].shape == (80, 80, energy.size - 1)
        assert xcs["emf_map"].shape == xcs["emf_sigma"].shape == (12, 80, 80) and xcs["emf_time"].shape == (12,)
        assert xcs["region_mask"].shape == (12, 80, 80) and xcs["region_mask"][()].any(axis=(1, 2)).all()
        emf = xcs["emf_cathode"][()]
        assert np.all((emf > 0.6) & (emf < 0.95))
        xct = entry["xct"]
        assert xct["reconstruction"].shape[-2:] == (80, 80) and np.isfinite(xct["reconstruction"][()]).all()
        assert {"cathode", "anode", "casing"} <= set(xct["masks"])
    assert runs["operando_xcsct"].with_suffix(".xcs.png").stat().st_size > 10_000


def test_a_failing_analysis_process_is_reported_not_waited_for(tmp_path):
    """A consumer process that cannot start says why, and the parent raises at once."""
    from streaming.app.config import load_config
    from streaming.app.processes import ConsumerProcess
    from streaming.errors import OperandoStreamError

    config = load_config(None, [f"out_dir='{tmp_path}'"])  # no HEXITEC calibration: no XCS-CT analysis
    process = ConsumerProcess("xcsct", config, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2")
    with pytest.raises(OperandoStreamError, match="xcsct analysis process failed: KeyError"):
        process.wait_finished("some-run", timeout_s=120)
    process.stop()


def test_service_processes_end_when_their_parent_is_killed(tmp_path):
    """A parent killed outright cannot stop its recorder: the recorder notices and ends."""
    import os
    import signal
    import time

    parent_code = (
        "import time\nfrom pathlib import Path\nfrom streaming.app.processes import RecorderProcess\n"
        "from streaming.store.recorder import RecorderConfig\n"
        f"r = RecorderProcess(RecorderConfig(out_dir=Path({str(tmp_path)!r}), "
        "document_address='tcp://127.0.0.1:1', frame_address='tcp://127.0.0.1:2'))\n"
        "print(r._process.pid, flush=True)\ntime.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True) as parent:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the recorder process outlived its killed parent by 30 s")
