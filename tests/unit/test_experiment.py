"""The main job end to end on the tiny settings: plans, recorder, files."""

from __future__ import annotations

import io

import h5py
import numpy as np

from streaming.config import load_config
from streaming.experiment import run_experiment

TINY = [
    "xrdct.preset=tiny", "xrdct.n_scans=1", "xcsct.n_projections=30", "xcsct.xct_exposure_s=0.05",
    "xcsct.xcs_exposure_s=0.01", "xcsct.xcs_positions=2", "xcsct.max_repeats=2", "xcsct.flats=2", "xcsct.darks=2",
    "potentiostat.protocol='CC charge to 4.2 V at 1C'", "potentiostat.sample_interval_s=1.0",
]  # fmt: skip


def test_both_operando_experiments_run_and_are_recorded(RE, tmp_path):
    config = load_config(None, [*TINY, f"out_dir='{tmp_path}'"])
    table = io.StringIO()
    result = run_experiment(("xrdct", "xcsct"), config, run_engine=RE, table_file=table)
    with h5py.File(result.run_files["xrdct"], "r") as file:
        assert file["entry"].attrs["plan_name"] == "operando_xrdct"
        assert file["entry/instrument/pilatus/data"].shape[0] == 48 * 64
    with h5py.File(result.run_files["xcsct"], "r") as file:
        assert file["entry"].attrs["plan_name"] == "operando_xcsct"
        assert file["entry/instrument/pco/data"].shape[0] == 2 * (2 + 2 + 30)
        assert file["entry/instrument/hexitec/data"].shape[0] == 2 * 2 * round(0.01 * 9118.87)
        # the potentiostat's monitor stream as columns: charging at 1C, the voltage rises
        cycling = file["entry/potentiostat"]
        charging = cycling["mode"][:] == b"constant_current"
        assert charging.sum() >= 3 and cycling["voltage"].attrs["units"] == "V"
        assert np.all(np.diff(cycling["voltage"][:][charging]) > 0)
        assert np.all(np.diff(cycling["time"][:]) >= 0) and cycling["capacity"][-1] > 0
        # the live XCS-CT analysis, through the run file's links
        emf = file["entry/xcs/emf_map"]
        assert emf.shape == (2 * 2, 80, 80) and np.isfinite(file["entry/xcs/emf_cathode"][:]).all()
        assert file["entry/xct/reconstruction"].shape[-2:] == (80, 80)
    assert len(result.analyses["xcsct"]) == 1
    assert result.run_files["xcsct"].with_suffix(".xcs.png").is_file()
    assert "potentiostat_voltage" in table.getvalue()
