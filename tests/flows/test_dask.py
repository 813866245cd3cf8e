"""``operando analyze --dask`` as users run it: the command and a LocalCluster of worker
processes, against ``operando analyze`` of the same recorded runs (issue 18)."""

from __future__ import annotations

import re
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401  (the results' filters)
import numpy as np

from tests.flows.conftest import OPERANDO, ROOT, launch


def _datasets(path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path, "r") as results:
        results["entry/xrdct"].visititems(
            lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
        )
    return found


def assert_identical_xrdct(ours, reference) -> None:
    """Every dataset of ``/entry/xrdct`` equal, bit for bit (the same patterns, placed and
    reduced by the same code; the reconstruction made per block of channels and the maps per
    block of rows on the workers), but the phase weights: the normal equations of a block of
    voxels are solved together (LAPACK), which rounds a few voxels' weights differently, within
    1e-6 of the map's range. On Dask nothing is reconstructed live (``reconstructed_live``
    False): the same image is made at the end."""
    a, b = _datasets(ours), _datasets(reference)
    assert sorted(a) == sorted(b)
    with h5py.File(ours, "r") as results:  # a dataset in a series, an attribute of one scan
        assert not np.any(results["entry/xrdct"].attrs.get("reconstructed_live", a.pop("reconstructed_live", None)))
    b.pop("reconstructed_live", None)
    for name in b:
        if name.startswith("phase_maps/"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6 * np.abs(b[name]).max(), err_msg=name)
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_analyze_on_dask_equals_analyze_and_survives_a_worker_killed_mid_task(xrdct_run, tmp_path):
    """Two worker processes, tasks of eight frames; a worker ended while it runs tasks: Dask
    runs them again elsewhere and the results are identical to ``operando analyze``'s."""
    analyze = launch([*OPERANDO, "analyze", str(xrdct_run.path), "--dask", "--dask-workers", "2",
                      "--chunk-frames", "8", "--out", str(tmp_path)])  # fmt: skip
    scheduler = re.search(r"scheduler at (tcp://\S+),", analyze.first_line)
    assert scheduler, analyze.first_line
    saboteur = subprocess.run([sys.executable, "-m", "tests.flows.dask_saboteur", scheduler.group(1)], cwd=ROOT,
                              capture_output=True, text=True, timeout=180)  # fmt: skip
    out, err = analyze.process.communicate(timeout=600)
    assert saboteur.returncode == 0 and "killed tcp://" in saboteur.stdout, saboteur.stderr[-2000:]
    assert analyze.process.returncode == 0, err[-3000:]
    assert f"frames: 0 live, {xrdct_run.n_frames} from the recorder's file, 0 lost" in out
    (ours,) = tmp_path.glob("*.xrdct.h5")
    assert_identical_xrdct(ours, xrdct_run.reference)


def test_analyze_on_dask_takes_two_runs_at_once(xrdct_run, tmp_path):
    """A second run, an operando series of two scans, analysed on the same workers at the
    same time as the first; each as ``operando analyze`` gives it."""
    series = tmp_path / "series"
    made = subprocess.run([*OPERANDO, "demo", "xrdct", "--preset", "tiny", "--set", "xrdct.n_scans=2",
                           "--set", "xrdct.seed=3", "--out", str(series), "-q"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    (second,) = (p for p in series.glob("*.h5") if p.suffixes == [".h5"])
    reference = tmp_path / "reference"
    done = subprocess.run([*OPERANDO, "analyze", str(second), "--out", str(reference), "-q"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    both = tmp_path / "both"
    done = subprocess.run([*OPERANDO, "analyze", str(xrdct_run.path), str(second), "--dask", "--dask-workers", "2",
                           "--out", str(both)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dask: 2 run(s)" in done.stderr and done.stdout.count("analysed ") == 2
    assert_identical_xrdct(both / xrdct_run.reference.name, xrdct_run.reference)
    (series_reference,) = reference.glob("*.xrdct.h5")
    assert_identical_xrdct(both / series_reference.name, series_reference)
    with h5py.File(both / series_reference.name, "r") as results:
        assert results["entry/xrdct/reconstruction"].shape[0] == 2  # the series' two scans
