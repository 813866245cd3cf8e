"""The XRD-CT analysis end to end: a real RunEngine drives the tiny simulated beamline, frames
and documents go through real sockets to a recorder and the analysis; the recorded run is
replayed through the analysis again, and through 1 or 3 PULL integration workers."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from devices import FrameSink, sim_xrdct_beamline
from plans import xrdct_zigzag
from simulators.xrdct_presets import PRESETS
from streaming.analysis.consumer import Consumer, ConsumerThread
from streaming.analysis.xrdct import (
    IntegrationWorker,
    XrdctAnalysis,
    XrdctAnalysisConfig,
    xrdct_analysis_factory,
)
from streaming.analysis.xrdct.chunks import BlockReduction
from streaming.app.analyses import xrdct_analysis_config
from streaming.app.config import load_config
from streaming.errors import ConfigError
from streaming.processing.fbp import reconstruct
from streaming.processing.integration import IntegrationConfig
from streaming.store.recorder import RecorderThread
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import Frame
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed
from tests.plain_hdf5 import read_without_plugins
from tests.xrdct_truth import cathode_lattice_errors, maps_config, phase_correlations


def analysis_config(simulation, out_dir: Path, **overrides) -> XrdctAnalysisConfig:
    """The simulator's 2θ grid (the same bins), the centre estimated from the data."""
    edges = simulation.radial_edges_deg
    settings = dict(
        out_dir=out_dir,
        integration=IntegrationConfig(n_radial=simulation.preset.n_radial,
                                      radial_range_deg=(float(edges[0]), float(edges[-1]))),
        maps=maps_config(simulation),
        air_edge_px=2,
    )  # fmt: skip
    settings.update(overrides)
    return XrdctAnalysisConfig(**settings)


def record_and_analyse(run_engine, out_dir: Path, make_plan, timeout_s: float = 60.0):
    """``make_plan(beamline)`` on the tiny simulated beamline under a real RunEngine, its
    frames and documents through real sockets to a recorder and a live analysis;
    (finished analysis, run file, beamline)."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        bl = sim_xrdct_beamline(preset="tiny", sink=FrameSink(frames, run_directory=out_dir))
        make = xrdct_analysis_factory(analysis_config(bl.pilatus.simulation, out_dir))
        consumer = ConsumerThread(Consumer(make, document_address=documents.address, frame_address=frames.address,
                                           linger_s=2.0))  # fmt: skip
        recorder = RecorderThread(recorder_config(out_dir, documents, frames))
        try:
            documents.wait_for_subscribers(2, 10)
            frames.wait_for_subscribers(2, 10)
            run_engine.subscribe(bl.sink)
            run_engine.subscribe(documents)
            run_engine(make_plan(bl))
            wait_until(lambda: len(consumer.consumer.finished) == 1, timeout_s=timeout_s)
            wait_until_closed(recorder.recorder)
        finally:
            run_engine.dispatcher.unsubscribe_all()
            done = consumer.stop()
            (path,) = recorder.stop().files.values()
    assert done.errors == 0
    return done.finished[0], path, bl


@pytest.fixture(scope="module")
def live(_session_run_engine, tmp_path_factory):
    """One zigzag scan recorded and analysed live; (analysis, run file, simulation)."""
    analysis, path, bl = record_and_analyse(
        _session_run_engine, tmp_path_factory.mktemp("xrdct"),
        lambda bl: xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **bl.zigzag_kwargs()),
    )  # fmt: skip
    return analysis, path, bl.pilatus.simulation


def replay_through(path: Path, config: XrdctAnalysisConfig, n_workers: int | None) -> XrdctAnalysis:
    """Replay ``path`` to a builder: raw frames over PUB/SUB (``n_workers`` None), or over
    PUSH to ``n_workers`` integration workers whose patterns fan in to the builder's PULL."""
    pattern = "pub" if n_workers is None else "push"
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, pattern=pattern, block_when_full=n_workers is None) as frames,
    ):
        make = xrdct_analysis_factory(config)
        if n_workers is None:
            builder = ConsumerThread(Consumer(make, document_address=documents.address,
                                              frame_address=frames.address, linger_s=2.0))  # fmt: skip
        else:
            builder = ConsumerThread(Consumer(make, document_address=documents.address, frame_address=LOOPBACK,
                                              frame_pattern="pull", frame_bind=True, linger_s=2.0))  # fmt: skip
        outputs, workers = [], []
        try:
            for _ in range(n_workers or 0):
                output = FramePublisher(builder.consumer.frames.address, pattern="push", bind=False)
                outputs.append(output)
                workers.append(ConsumerThread(Consumer(IntegrationWorker(config, output),
                                                       document_address=documents.address,
                                                       frame_address=frames.address, frame_pattern="pull",
                                                       linger_s=1.0)))  # fmt: skip
            documents.wait_for_subscribers(1 + len(workers), 10)
            frames.wait_for_subscribers(max(1, len(workers)), 10)
            # (no wait on the outputs: a connecting PUSH queues until its peer is there, and
            # its monitor may miss a handshake that completes inside the constructor)
            with RunFileReader(path) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            wait_until(lambda: len(builder.consumer.finished) == 1, timeout_s=60)
        finally:
            shares = [worker.stop().finished for worker in workers]
            for output in outputs:
                output.close(linger_s=0)
            done = builder.stop()
    assert done.errors == 0
    if n_workers:
        # every worker took a share, and the builder got every pattern (none integrated itself)
        assert all(share and share[0].n_frames > 0 for share in shares)
        assert sum(share[0].n_frames for share in shares) == done.finished[0].n_patterns
    return done.finished[0]


def feed_recorded_run(path: Path, config: XrdctAnalysisConfig, leave_out=frozenset(), alter=None,
                      reduction=None) -> XrdctAnalysis:  # fmt: skip
    """A recorded run's documents and frames straight into a new analysis (no sockets), but
    the frames at the (angle, translation) positions ``leave_out``, and each frame through
    ``alter(header, data) -> (header, data)`` if given, its scans reduced on ``reduction`` if
    given; finished."""
    with RunFileReader(path) as reader:
        messages = list(reader.messages())
    start = next(m.document[1] for m in messages if m.document and m.document[0] == "start")
    stop = next(m.document[1] for m in messages if m.document and m.document[0] == "stop")
    analysis = XrdctAnalysis(start, config)
    if reduction is not None:
        analysis.reduce_on(reduction)
    for message in messages:
        if message.document is not None and message.document[0] not in ("start", "stop"):
            analysis.document(*message.document)
        elif message.frame is not None:
            header, data = message.frame
            if (header.indices["angle"], header.indices["translation"]) not in leave_out:
                analysis.frame(Frame(*(alter(header, data) if alter else (header, data))))
    analysis.finish(stop)
    return analysis


def assert_same_results(ours: XrdctAnalysis, reference: XrdctAnalysis) -> None:
    np.testing.assert_array_equal(ours.scan.sinogram.sinogram(), reference.scan.sinogram.sinogram())
    assert ours.center_px == pytest.approx(reference.center_px, abs=1e-9)
    scale = float(np.abs(reference.scan.reconstruction).max())
    # equal sums; only float32 summation order may differ (lines complete in another order)
    np.testing.assert_allclose(ours.scan.reconstruction, reference.scan.reconstruction, atol=1e-5 * scale)
    for name, image in reference.scan.maps.phases.weights.items():
        scale = max(1e-30, np.abs(image).max())
        np.testing.assert_allclose(ours.scan.maps.phases.weights[name], image, atol=1e-4 * scale)
    np.testing.assert_allclose(ours.scan.maps.lattices["NMC532_c"], reference.scan.maps.lattices["NMC532_c"], atol=1e-4)


# -- live ---------------------------------------------------------------------------------------


def test_live_maps_follow_the_ground_truth(live):
    analysis, _, simulation = live
    assert analysis.finished and analysis.scan.sinogram.complete and analysis.n_frames == 48 * 64
    correlations = phase_correlations(analysis.scan.maps.phases.weights, simulation)
    assert min(correlations.values()) >= 0.9, correlations  # LiC30 the lowest: 0.93
    # the NMC (003) fit per voxel: within 0.01 Å of the truth over most of the cathode
    # (median 0.004 Å; the rest: voxels on its edges and where the inactive NMC's line overlaps)
    c_map = analysis.scan.maps.lattices["NMC532_c"]
    errors, _ = cathode_lattice_errors(c_map, simulation)
    assert np.isfinite(errors).mean() > 0.99
    assert np.nanmedian(errors) < 0.005 and np.nanmean(errors <= 0.01) >= 0.8
    cathode = np.isfinite(simulation.state.nmc_c_angstrom) & np.isfinite(c_map)
    assert abs(np.mean(c_map[cathode]) - np.mean(simulation.state.nmc_c_angstrom[cathode])) < 0.005


def test_center_of_rotation_is_estimated_within_half_a_pixel(live):
    analysis, _, simulation = live
    assert abs(analysis.center_px - simulation.center_of_rotation_px) < 0.5
    assert abs(analysis.scan.preliminary_center_px - simulation.center_of_rotation_px) < 0.5
    # what is written was reconstructed with the final centre, live or in a batch
    batch = reconstruct(analysis.scan.corrected_sinogram(), analysis.angles_deg, center_px=analysis.center_px)
    nrmse = np.sqrt(np.mean((analysis.scan.reconstruction - batch) ** 2)) / (batch.max() - batch.min())
    assert nrmse <= 0.01


def test_lost_patterns_are_interpolated_not_streaked(live, tmp_path):
    """Frames that never arrive (fed here from the recorded run, three left out) are
    interpolated from their neighbours, counted in the file and the report, and leave the
    reconstruction as it was (a 0 would streak it)."""
    analysis, path, simulation = live
    lost = {(5, 20), (6, 31), (30, 40)}  # (angle, translation)
    lossy = feed_recorded_run(path, analysis_config(simulation, tmp_path), leave_out=lost)
    assert lossy.scan.n_interpolated == 3 and not lossy.scan.reconstructed_live
    with h5py.File(lossy.path) as file:
        assert file["entry/xrdct"].attrs["patterns_interpolated"] == 3
        assert file["entry/xrdct/filled"][()].sum() == 48 * 64 - 3
    assert "3 missing patterns interpolated" in lossy.report()[-1]
    complete = analysis.scan.reconstruction
    nrmse = np.sqrt(np.mean((lossy.scan.reconstruction - complete) ** 2)) / (complete.max() - complete.min())
    assert nrmse < 0.002


def test_patterns_are_divided_by_the_beam_monitor(live, tmp_path):
    """With ``monitor="i0"`` each pattern is divided by the frame's i0 reading: frames taken
    with twice the beam (twice the counts, i0 = 2) give the sinogram of the run as recorded;
    a frame without the reading is rejected, counted and interpolated."""
    import dataclasses

    analysis, path, simulation = live

    def doubled_beam_on_odd_translations(header, data):
        if (header.indices["angle"], header.indices["translation"]) == (7, 9):
            return header, data  # no i0 reading
        doubled = header.indices["translation"] % 2 == 1
        positions = {**header.positions, "i0": 2.0 if doubled else 1.0}
        return dataclasses.replace(header, positions=positions), data * 2 if doubled else data

    config = analysis_config(simulation, tmp_path, monitor="i0")
    normalised = feed_recorded_run(path, config, alter=doubled_beam_on_odd_translations)
    assert normalised.n_rejected == 1 and normalised.scan.n_interpolated == 1
    filled = normalised.scan.sinogram.filled
    assert not filled[7, 9] and filled.sum() == 48 * 64 - 1
    np.testing.assert_array_equal(
        normalised.scan.sinogram.sinogram()[filled], analysis.scan.sinogram.sinogram()[filled]
    )
    with h5py.File(normalised.path) as file:
        assert file["entry/xrdct"].attrs["monitor"] == "i0"
    with pytest.raises(ConfigError, match=r"xrdct_analysis\.monitor"):
        analysis_config(simulation, tmp_path, monitor="")


def test_the_run_file_shows_the_results_through_its_link(live):
    analysis, path, _ = live
    assert analysis.path.parent == path.parent and analysis.figure_path.stat().st_size > 10_000
    with h5py.File(path, "r") as file:
        xrdct = file["entry/xrdct"]
        assert xrdct["sinogram"].shape == (48, 64, 400) and xrdct["reconstruction"].shape == (64, 64, 400)
        assert xrdct["radial"].attrs["units"] == "deg" and xrdct["translations"].attrs["units"] == "mm"
        np.testing.assert_array_equal(xrdct["sinogram"][()], analysis.scan.sinogram.sinogram())
        assert set(xrdct["phase_maps"]) >= {"Fe", "Al", "Cu", "NMC532", "graphite"}
        assert xrdct["lattice_maps/NMC532_c"].attrs["units"] == "angstrom"
        attrs = dict(xrdct.attrs)
    assert list(attrs["trim_percentiles"]) == [5.0, 95.0] and attrs["integration_method"] == "trimmed_mean"
    assert attrs["center_of_rotation_px"] == analysis.center_px and attrs["center_source"] == "estimated"
    assert attrs["filter_name"] == "ram-lak" and attrs["air_edge_px"] == 2 and attrs["run_uid"] == analysis.start["uid"]
    assert math.isclose(attrs["wavelength_angstrom"], 0.11979, rel_tol=1e-6)


def test_the_results_open_in_any_hdf5_reader(live):
    """gzip, not a plugin's filter: plain h5py in a fresh process reads every dataset, equal
    to what the analysis holds."""
    analysis, _, _ = live
    found = read_without_plugins(analysis.path)
    assert found["entry/xrdct/reconstruction"][1] == "gzip" and found["entry/xrdct/sinogram"][1] == "gzip"
    assert found["entry/xrdct/reconstruction"][2] == pytest.approx(float(analysis.scan.reconstruction.sum()), rel=1e-6)
    assert len(found) > 20


# -- replay and workers -----------------------------------------------------------------------------


def test_a_replay_gives_the_live_results(live, tmp_path):
    analysis, path, simulation = live
    replayed = replay_through(path, analysis_config(simulation, tmp_path, figure=False), None)
    assert replayed.start["uid"] == analysis.start["uid"] and replayed.n_frames == analysis.n_frames
    assert_same_results(replayed, analysis)


@pytest.mark.parametrize("n_workers", [1, 3])
def test_integration_workers_give_the_live_results(live, tmp_path, n_workers):
    analysis, path, simulation = live
    built = replay_through(path, analysis_config(simulation, tmp_path, figure=False), n_workers)
    assert built.n_frames == 0 and built.n_patterns == 48 * 64
    assert_same_results(built, analysis)


def test_a_configured_centre_reconstructs_every_line_live(live, tmp_path):
    _, path, simulation = live
    config = analysis_config(simulation, tmp_path, figure=False, center_px=simulation.center_of_rotation_px)
    replayed = replay_through(path, config, None)
    assert replayed.scan.reconstructed_live and replayed.center_px == simulation.center_of_rotation_px
    batch = reconstruct(replayed.scan.corrected_sinogram(), replayed.angles_deg, center_px=replayed.center_px)
    np.testing.assert_allclose(replayed.scan.reconstruction, batch, atol=1e-5 * np.abs(batch).max())


@pytest.mark.parametrize("center", ["estimated", "configured"])
def test_scans_reduced_in_blocks_on_an_executor_give_the_live_results(live, tmp_path, center):
    """The reconstruction per block of radial channels and the maps per block of rows, each a
    task of an executor (Dask's client in ``operando analyze --dask``): nothing back-projected
    while lines arrive, and at the end the live image, bit for bit."""
    _, path, simulation = live
    centre = simulation.center_of_rotation_px if center == "configured" else None
    config = analysis_config(simulation, tmp_path, figure=False, center_px=centre)
    reference = feed_recorded_run(path, config)
    with ThreadPoolExecutor(3) as executor:
        midway = XrdctAnalysis(*_start_and_config(path, config))
        midway.reduce_on(BlockReduction(executor.submit))
        with RunFileReader(path) as reader:
            for header, data, *_ in reader.frames("pilatus", 0, 40 * 64):
                midway.frame(Frame(header, data))
        scan = midway.in_flight[0]
        assert scan.fbp is None and len(scan.line_order) == 40  # nothing back-projected yet, the order kept
        midway.finish(None)
        ours = feed_recorded_run(path, config, reduction=BlockReduction(executor.submit, min_blocks=5))
        with pytest.raises(RuntimeError, match="frames have begun"):
            ours.reduce_on(BlockReduction(executor.submit))
    assert reference.scan.reconstructed_live and not ours.scan.reconstructed_live
    assert ours.scan.reconstruction_center_px == reference.scan.reconstruction_center_px
    np.testing.assert_array_equal(ours.scan.reconstruction, reference.scan.reconstruction)
    for name, image in reference.scan.maps.phases.weights.items():
        np.testing.assert_allclose(ours.scan.maps.phases.weights[name], image, rtol=1e-6,
                                   atol=1e-6 * np.abs(image).max())  # fmt: skip
    np.testing.assert_array_equal(ours.scan.maps.lattices["NMC532_c"], reference.scan.maps.lattices["NMC532_c"])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"center_px": float("nan")}, "center_px"),
        ({"filter_name": "ramp"}, "filter_name"),
        ({"live_channels": (0, 5000)}, "live_channels"),
        ({"air_edge_px": -1}, "air_edge_px"),
        ({"poni_path": "/nonexistent.poni"}, "poni_path"),
        ({"detector": "a.b"}, "detector"),
    ],
)
def test_bad_settings_name_their_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=f"xrdct_analysis.{key}"):
        XrdctAnalysisConfig(out_dir=tmp_path, **overrides)


def test_operando_analyze_reruns_the_analysis_with_new_trim_percentiles(live, tmp_path):
    from streaming.app.cli import main
    from streaming.store.runfile import analysis_file_name

    _, path, _ = live
    results = {}
    for percentiles in ("[5, 95]", "[20, 80]"):
        out = tmp_path / percentiles.strip("[]").replace(", ", "-")
        assert main(["analyze", str(path), "--out", str(out), "--set", f"xrdct.trim_percentiles={percentiles}"]) == 0
        with h5py.File(out / analysis_file_name(path, "xrdct"), "r") as file:
            group = file["entry/xrdct"]
            results[percentiles] = (np.array(group.attrs["trim_percentiles"]), group["sinogram"][()])
    (low_attrs, low_sinogram), (high_attrs, high_sinogram) = results.values()
    np.testing.assert_array_equal(low_attrs, [5, 95])
    np.testing.assert_array_equal(high_attrs, [20, 80])
    assert low_sinogram.shape == high_sinogram.shape and not np.allclose(low_sinogram, high_sinogram)
    # the run's start document names the simulated detector: its bins, without being told
    assert low_sinogram.shape[-1] == PRESETS["tiny"].n_radial


# -- an operando series ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def series(_session_run_engine, tmp_path_factory):
    """Two zigzag scans of the charging cell in one operando_xrdct run, analysed live;
    (analysis, run file, simulation, the state of charge each scan's lines saw)."""
    from devices import parse_protocol
    from plans import operando_xrdct

    socs = []

    def charge_and_scan_twice(bl):
        cell_soc = bl.pilatus.soc_source
        bl.pilatus.soc_source = lambda: socs.append(cell_soc()) or socs[-1]
        protocol = parse_protocol("CC charge to 4.2 V at C/2", capacity_ah=bl.potentiostat.battery.nominal_capacity_ah)
        return operando_xrdct(bl.potentiostat, bl.pilatus, bl.translation, bl.rotation, protocol=protocol,
                              max_repeats=2, delay=bl.delay, interval_s=2400.0, **bl.zigzag_kwargs())  # fmt: skip

    analysis, path, bl = record_and_analyse(_session_run_engine, tmp_path_factory.mktemp("xrdct-series"),
                                            charge_and_scan_twice, timeout_s=120)  # fmt: skip
    # one SOC per line (the detector follows the cell before each), the stage's first aside
    per_scan = np.array(socs[1:]).reshape(2, -1)
    return analysis, path, bl.pilatus.simulation, per_scan


def test_an_operando_series_is_reduced_scan_by_scan(series):
    analysis, path, _, _ = series
    assert analysis.finished and not analysis.in_flight and analysis.n_frames == 2 * 48 * 64
    with h5py.File(path, "r") as file:
        xrdct = file["entry/xrdct"]
        assert xrdct["sinogram"].shape == (2, 48, 64, 400) and xrdct["reconstruction"].shape == (2, 64, 64, 400)
        assert xrdct["phase_maps/NMC532"].shape == (2, 64, 64) and xrdct["lattice_maps/NMC532_c"].shape == (2, 64, 64)
        np.testing.assert_array_equal(xrdct["scan"][()], [0, 1])
        voltage, capacity = xrdct["voltage"][()], xrdct["capacity"][()]
        assert xrdct["capacity"].attrs["units"] == "mAh" and xrdct.attrs["n_scans"] == 2
        assert np.all((voltage > 2.75) & (voltage <= 4.2)) and capacity[1] > capacity[0] + 100
        np.testing.assert_array_equal(xrdct["reconstruction"][1], analysis.scan.reconstruction)
        assert xrdct["potentiostat/voltage"].size > 10
    first_scan_figure = path.parent / f"{analysis.path.stem}.scan000.png"
    assert all(p.stat().st_size > 10_000 for p in (analysis.figure_path, first_scan_figure))
    report = "\n".join(analysis.report())
    assert "scan 0 at" in report and "scan 1 at" in report and "mean NMC532_c" in report


def test_an_operando_series_follows_the_cathode_lattice(series):
    """Each scan's cathode mean c is the simulated cell's at the state of charge of that scan
    (within 0.01 Å), so the change on charge shows."""
    analysis, path, simulation, socs = series
    with h5py.File(path, "r") as file:
        c_maps = file["entry/xrdct/lattice_maps/NMC532_c"][()]
    means, truths = [], []
    for c_map, scan_socs in zip(c_maps, socs, strict=True):
        truth = simulation.cell_state(float(np.median(scan_socs))).nmc_c_angstrom
        fractions = simulation.state.fractions
        cathode = (fractions["NMC532"] >= 0.5 * fractions["NMC532"].max()) & np.isfinite(c_map) & np.isfinite(truth)
        means.append(float(np.mean(c_map[cathode])))
        truths.append(float(np.mean(truth[cathode])))
    np.testing.assert_allclose(means, truths, atol=0.01)
    assert abs(truths[1] - truths[0]) > 0.03  # the charge moved c by several times the tolerance
    # the series' mean c (over every fitted voxel) is the cathode's
    np.testing.assert_allclose(analysis.series()["mean_NMC532_c"], truths, atol=0.01)


def test_operando_consume_analyses_a_replayed_run(live, tmp_path):
    """The analyses as a service (``operando consume``, a real process) fed by a replay."""
    import signal
    import subprocess
    import sys

    analysis, path, simulation = live
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        service = subprocess.Popen(
            [sys.executable, "-m", "streaming.app.cli", "consume", "xrdct", "--docs", documents.address, "--frames",
             frames.address, "--out", str(tmp_path), "--set", "xrdct.preset='tiny'"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 120)
            frames.wait_for_subscribers(1, 120)
            with RunFileReader(path) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            sidecar = tmp_path / analysis.path.name
            wait_until(lambda: sidecar.with_suffix(".png").is_file(), timeout_s=120)  # written last
        finally:
            service.send_signal(signal.SIGINT)
            printed, errors = service.communicate(timeout=60)
    assert service.returncode == 0, errors[-2000:]
    assert f"run {analysis.start['uid']}:" in printed and "centre of rotation" in printed
    with h5py.File(sidecar, "r") as file:
        centre = file["entry/xrdct"].attrs["center_of_rotation_px"]  # a single scan: an attribute
        assert file["entry/xrdct/sinogram"].shape == (48, 64, 400)
    assert abs(float(centre) - simulation.center_of_rotation_px) < 0.5


def test_integration_scales_out_over_worker_processes(live, tmp_path):
    """``operando distribute``, two ``operando integrate`` workers and ``operando consume xrdct
    --patterns``, each a real process, fed by a replay: the workers share the frames, and the
    builder's sinogram is the live analysis' one."""
    import signal
    import subprocess
    import sys

    analysis, path, _ = live
    cli = [sys.executable, "-m", "streaming.app.cli"]
    tiny = ["--set", "xrdct.preset='tiny'"]

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        process = subprocess.Popen([*cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return process, process.stdout.readline()  # its first line says where it listens

    processes = []
    try:
        with (
            DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
            FramePublisher(LOOPBACK, block_when_full=True) as frames,
        ):
            distributor, line = start("distribute", "--frames", frames.address, "--workers", LOOPBACK)
            processes.append(distributor)
            workers_address = line.split()[-1]
            builder, line = start("consume", "xrdct", "--docs", documents.address, "--frames", frames.address,
                                  "--patterns", LOOPBACK, "--out", str(tmp_path), *tiny)  # fmt: skip
            processes.append(builder)
            patterns_address = line.split("XRD-CT patterns on ")[1].split(")")[0]
            for _ in range(2):
                worker, _ = start("integrate", "--docs", documents.address, "--frames", workers_address,
                                  "--to", patterns_address, *tiny)  # fmt: skip
                processes.append(worker)
            documents.wait_for_subscribers(3, 120)  # the builder and the workers
            frames.wait_for_subscribers(1, 120)  # the distributor
            with RunFileReader(path) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            sidecar = tmp_path / analysis.path.name
            wait_until(lambda: sidecar.with_suffix(".png").is_file(), timeout_s=120)  # written last
    finally:
        outputs = []
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            outputs.append(process.communicate(timeout=60))
    assert all(process.returncode == 0 for process in processes), [errors[-2000:] for _, errors in outputs]
    shares = [int(out.split("integrated ")[1].split()[0]) for out, _ in outputs[2:]]
    assert all(share > 0 for share in shares) and sum(shares) == 48 * 64, shares
    assert f"forwarded {48 * 64} frames" in outputs[0][0]
    # the same run integrated in one process with the same (command-line) settings
    settings = xrdct_analysis_config(load_config(None, ["xrdct.preset='tiny'", f"out_dir={str(tmp_path / 'one')!r}"]))
    reference = feed_recorded_run(path, settings)
    with h5py.File(sidecar, "r") as file:
        np.testing.assert_array_equal(file["entry/xrdct/sinogram"][()], reference.scan.sinogram.sinogram())
        assert file["entry/xrdct"].attrs["patterns_interpolated"] == 0


def test_a_builder_fetches_the_frames_no_pattern_came_from(live, tmp_path):
    """Frames lost on their way to the integration workers (a distributor that fell behind a
    non-blocking publisher): the builder knows each pattern's source frame, fetches the raw
    frames no pattern came from out of the recorder's file, integrates them itself, and ends
    with the live analysis' result."""
    analysis, path, simulation = live
    config = analysis_config(simulation, tmp_path)
    lost = {3, *range(700, 760), 3000}
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, pattern="push") as frames,
    ):
        builder = ConsumerThread(Consumer(xrdct_analysis_factory(config), document_address=documents.address,
                                          frame_address=LOOPBACK, frame_pattern="pull", frame_bind=True,
                                          linger_s=2.0))  # fmt: skip
        output = FramePublisher(builder.consumer.frames.address, pattern="push", bind=False)
        worker = ConsumerThread(Consumer(IntegrationWorker(config, output), document_address=documents.address,
                                         frame_address=frames.address, frame_pattern="pull", linger_s=1.0))  # fmt: skip
        try:
            documents.wait_for_subscribers(2, 10)
            frames.wait_for_subscribers(1, 10)
            with RunFileReader(path) as reader:
                for message in reader.messages():
                    if message.document is not None:
                        documents(*message.document)
                    elif message.frame[0].seq not in lost:
                        frames.send(*message.frame)
            wait_until(lambda: len(builder.consumer.finished) == 1, timeout_s=60)
        finally:
            worker.stop()
            output.close(linger_s=0)
            done = builder.stop()
    ours = done.finished[0]
    assert ours.delivery.backfilled == {"pilatus": len(lost)} and not ours.delivery.unrecovered
    assert ours.n_frames == len(lost) and ours.n_patterns == 48 * 64 - len(lost)  # integrated here / by the worker
    assert_same_results(ours, analysis)


# -- live products (the dashboard's channel) --------------------------------------------------


def test_products_hold_the_analysis_state_at_any_moment(series, tmp_path):
    """Mid-way through the second scan: the scan's sinogram and growing image at the default
    2θ and at one asked for (nonsense requests ignored), the first scan's maps, the series so
    far, the potentiostat; each survives the wire."""
    from streaming.analysis.products import potentiostat_product
    from streaming.analysis.xrdct.products import xrdct_products
    from streaming.wire.products import decode_product, encode_product

    _, path, simulation, _ = series
    analysis = XrdctAnalysis(*_start_and_config(path, analysis_config(simulation, tmp_path, figure=False)))
    with RunFileReader(path) as reader:
        messages = list(reader.messages())
    n_frames = 0
    for message in messages:  # everything until three quarters of the second scan
        if message.document is not None and message.document[0] not in ("start", "stop"):
            analysis.document(*message.document)
        elif message.frame is not None:
            analysis.frame(Frame(*message.frame))
            n_frames += 1
            if n_frames == 48 * 64 + 36 * 64:
                break
    asked = {"xrdct.channel": {"7", "junk", "99999"}}
    made = xrdct_products(analysis, lambda key: asked.get(key, set()))
    products = {product.name: decode_product(encode_product(product)) for product in made}
    default = analysis.default_channel()
    assert set(products) == {"xrdct.patterns", f"xrdct.scan@{default}", "xrdct.scan@7", "xrdct.maps", "xrdct.series"}
    scan = analysis.in_flight[1]
    for channel in (7, default):
        shown = products[f"xrdct.scan@{channel}"]
        assert shown.values["lines_done"] == 36 and shown.values["scan"] == 1 and not shown.values["finished"]
        np.testing.assert_array_equal(shown.arrays["sinogram"], scan.sinogram.sinogram()[:, :, channel])
        np.testing.assert_array_equal(shown.arrays["reconstruction"], scan.fbp.image()[:, :, channel])
    # the mean pattern is the mean of the scan's placed patterns; the default channel its strongest
    filled = scan.sinogram.filled
    mean = scan.sinogram.sinogram()[filled].mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(products["xrdct.patterns"].arrays["mean"], mean, rtol=1e-5)
    assert default == int(np.argmax(mean))
    maps = products["xrdct.maps"]
    assert maps.values["scan"] == 0
    np.testing.assert_array_equal(maps.arrays["lattice:NMC532_c"], analysis.last_maps.maps.lattices["NMC532_c"])
    np.testing.assert_array_equal(products["xrdct.series"].arrays["capacity"], analysis.series()["capacity"])
    curve = potentiostat_product(analysis.readings, analysis.start["uid"])
    assert curve.arrays["voltage"].size == len(analysis.readings) > 10
    np.testing.assert_array_equal(curve.arrays["voltage"], analysis.readings.series()["voltage"])
    analysis.finish(None)  # the run cut short: the second scan is written partial


def _start_and_config(path: Path, config: XrdctAnalysisConfig) -> tuple[dict, XrdctAnalysisConfig]:
    with RunFileReader(path) as reader:
        start = next(doc for name, doc, *_ in reader.documents() if name == "start")
    return start, config


def test_a_consumer_publishes_products_live_and_a_dashboard_page_shows_them(series, tmp_path):
    """A replay through a consumer that publishes its products on a real socket, read by the
    dashboard's store and drawn by two dashboard pages (Bokeh documents, no browser): updates
    at most every 0.5 s, every frame counted in the diagnostics, a 2θ chosen on one page asked
    of the analysis and shown there, and the same final state on both pages."""
    from bokeh.document import Document

    from streaming.app.dashboard_page import DashboardSession
    from streaming.app.dashboard_store import ProductStore
    from streaming.wire.products import ProductPublisher

    _, path, simulation, _ = series
    config = analysis_config(simulation, tmp_path, figure=False)
    with (
        ProductPublisher(LOOPBACK) as products,
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        store = ProductStore(products.address).start()
        pages = [DashboardSession(store, Document()) for _ in range(2)]
        consumer = ConsumerThread(Consumer(xrdct_analysis_factory(config), document_address=documents.address,
                                           frame_address=frames.address, linger_s=2.0, products=products))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            wait_until(lambda: products.n_receivers == 1)
            started = time.monotonic()
            with RunFileReader(path) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            chosen = None
            while not consumer.consumer.finished:
                for page in pages:
                    page.update()
                if chosen is None and pages[0]._two_theta.size:
                    pages[0].select_two_theta(float(pages[0]._two_theta[40]))
                    chosen = pages[0].channel
                time.sleep(0.1)
            elapsed_s = time.monotonic() - started
            time.sleep(1.0)  # the last products reach the store
            for page in pages:
                page.update()
        finally:
            done = consumer.stop()
            store.stop()
    analysis = done.finished[0]
    assert chosen == 40 and done.errors == 0
    assert f"(channel {chosen})" in pages[0].sinogram_plot.title.text
    _, final = store.get(f"xrdct.scan@{chosen}")
    assert final.values["finished"]
    np.testing.assert_array_equal(final.arrays["reconstruction"], analysis.scan.reconstruction[:, :, chosen])
    _, diagnostics = store.get("diagnostics")
    assert diagnostics.values["streams"]["pilatus"]["received"] == 2 * 48 * 64
    assert diagnostics.values["streams"]["pilatus"]["missing"] == 0
    assert store.get("xrdct.patterns")[0] <= elapsed_s / 0.5 + 4  # throttled, whatever the frame rate
    for name in ("potentiostat_source", "series_source", "lattice_source", "pattern_source"):
        first, second = (page.document.get_model_by_name(name).data for page in pages)
        assert first.keys() == second.keys(), name
        assert all(np.array_equal(first[key], second[key], equal_nan=True) for key in first), name
    assert len(pages[0].potentiostat_source.data["voltage"]) == len(analysis.readings)
