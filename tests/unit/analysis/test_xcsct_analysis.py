"""The live XCS-CT analysis on simulated operando runs, through real sockets, recorded and replayed.

Two short ``operando_xcsct`` runs of the simulated coin cell (discharged, soc 0, and charged,
soc 0.9), each one XCT scan then XCS at two heights through the cathode, are analysed live by
a consumer while the recorder writes the run file into the same folder; one of them is then
replayed from its file into a second consumer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from devices import FrameSink, parse_protocol, sim_xcsct_beamline
from plans import operando_xcsct
from streaming.analysis.consumer import Consumer, ConsumerThread
from streaming.analysis.xcsct import XcsctAnalysis, XcsctAnalysisConfig, xcsct_analysis_factory
from streaming.errors import ConfigError
from streaming.processing.compton import emf
from streaming.processing.segmentation import mask_on_xcs_grid
from streaming.store.recorder import RecorderThread
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed

OCCUPANCY = 0.01  # 64 photons a frame, as at the beamline
XCS_EXPOSURE_S = 0.5  # 4559 frames per height
N_FRAMES = round(XCS_EXPOSURE_S * 9118.87)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def analysis_config(folder: Path, out_dir: Path, bl, **overrides) -> XcsctAnalysisConfig:
    paths = bl.hexitec.write_calibration(folder)
    np.save(folder / "darks.npy", bl.hexitec.simulator().dark_frames(500))
    settings = dict(out_dir=out_dir, gradients_path=paths["gradients"], intercepts_path=paths["intercepts"],
                    dark_frames_path=folder / "darks.npy", xct_pixel_size_m=bl.phantom.voxel_xy_m,
                    xct_row_height_m=bl.phantom.voxel_z_m, figure=True)  # fmt: skip
    settings.update(overrides)
    return XcsctAnalysisConfig(**settings)


def consume(documents, frames, config) -> ConsumerThread:
    return ConsumerThread(Consumer(xcsct_analysis_factory(config), document_address=documents.address,
                                   frame_address=frames.address, linger_s=2.0))  # fmt: skip


def live_run(run_engine, folder: Path, soc: float) -> dict[str, Any]:
    """One operando run at ``soc``: analysed live, recorded into the same folder."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        bl = sim_xcsct_beamline(sink=FrameSink(frames, run_directory=folder), n_z=16, soc=soc, occupancy=OCCUPANCY,
                                sample_interval_s=0.5)  # fmt: skip
        heights = bl.cathode_heights_mm(2)
        # the calibration comes from the simulator of the first acquisition (it takes a second to build)
        bl.beam.set("fan").wait(10)
        bl.vertical.set(float(heights[0])).wait(10)
        config = analysis_config(folder / "calibration", folder / "out", bl)
        consumer = consume(documents, frames, config)
        recorder = RecorderThread(recorder_config(folder / "out", documents, frames))
        try:
            documents.wait_for_subscribers(2, 10)
            frames.wait_for_subscribers(2, 10)
            run_engine.subscribe(bl.sink)
            run_engine.subscribe(documents)
            run_engine(operando_xcsct(
                bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical,
                protocol=parse_protocol("rest 60 s", capacity_ah=bl.potentiostat.battery.nominal_capacity_ah),
                n_projections=90, xcs_positions_mm=heights, xct_exposure=0.02, xcs_exposure=XCS_EXPOSURE_S, flats=4,
                darks=4, shutter=bl.shutter, beam=bl.beam, sample_stage=bl.translation, out_position=25.0,
                max_repeats=1,
            ))  # fmt: skip
            wait_until(lambda: len(consumer.consumer.finished) == 1, timeout_s=60)
            wait_until_closed(recorder.recorder)
        finally:
            run_engine.dispatcher.unsubscribe_all()
            analysis = consumer.stop().finished[0]
            (path,) = recorder.stop().files.values()
    simulators = []
    for height in heights:  # the simulators of the acquisitions, as the stages left them
        bl.vertical.set(float(height)).wait(10)
        simulators.append(bl.hexitec.simulator())
    return {"analysis": analysis, "path": path, "config": config, "bl": bl, "simulators": simulators}


@pytest.fixture(scope="module")
def runs(_session_run_engine, tmp_path_factory) -> dict[float, dict[str, Any]]:
    return {soc: live_run(_session_run_engine, tmp_path_factory.mktemp(f"soc{soc}"), soc) for soc in (0.0, 0.9)}


def test_the_emf_of_the_cathode_matches_the_simulators_expectation(runs):
    for run in runs.values():
        analysis = run["analysis"]
        edges = analysis.config.hexitec.energy_edges_kev
        results = analysis.results
        assert results["position"] == [0, 1] and results["scan"] == [0, 0]
        assert all(results["region_from_xct"]) and min(results["n_frames"]) == N_FRAMES
        for i, simulator in enumerate(run["simulators"]):
            # the expectation of what the chain measures: summed two-pixel events at two pixels'
            # noise, three-pixel events dropped (the unmodelled 1 %-occupancy pile-up is small)
            expected_cube = simulator.expected_spectra(charge_sharing="sum")
            expected = emf(expected_cube[results["region_mask"][i]].sum(axis=0), edges)
            value, sigma = results["emf_cathode"][i], results["emf_cathode_sigma"][i]
            assert 0 < sigma < 0.01 * value
            assert abs(value - expected) < 3 * sigma, (value, expected, sigma)
            # the map's sigma is Poisson's: pixels with more counts are known better
            assert np.nanmedian(results["emf_sigma"][i][results["region_mask"][i]]) > 10 * sigma


def test_the_emf_ranks_the_cathodes_lithium_content(runs):
    # charging takes Li out of the cathode: fewer slow valence electrons, a narrower
    # Compton profile's centre, a lower EMF; averaged over the two heights
    discharged = np.mean(runs[0.0]["analysis"].results["emf_cathode"])
    charged = np.mean(runs[0.9]["analysis"].results["emf_cathode"])
    sigma = np.hypot(*(np.sqrt(np.sum(np.square(runs[s]["analysis"].results["emf_cathode_sigma"]))) / 2
                       for s in runs))  # fmt: skip
    assert discharged - charged > 2 * sigma


def test_event_counters_follow_the_simulators_truth(runs):
    for run in runs.values():
        counters, truth = run["analysis"].counters[-1], run["simulators"][-1].truth
        assert counters["frames"] == truth.frames == N_FRAMES
        # every lit pixel is seen (two photons in one pixel of one frame are rare)
        lit = truth.single + 2 * truth.two_pixel + 3 * truth.three_pixel
        assert counters["hit_pixels"] == pytest.approx(lit, rel=0.02)
        # at 1 % occupancy ~8 % of photons land beside another in the same frame and are
        # merged or dropped with it (the chain agrees with the truth to 1 % at 0.05 %:
        # test_hexitec_processing); the counts follow the truth within that
        assert truth.single * 0.88 < counters["single"] < truth.single
        assert counters["merged"] == pytest.approx(truth.two_pixel, rel=0.1)
        assert counters["dropped"] > truth.three_pixel


def test_the_cathode_mask_from_xct_matches_the_phantom_on_the_xcs_grid(runs):
    run = runs[0.0]
    analysis, phantom = run["analysis"], run["bl"].phantom
    assert len(analysis.xct) == 1 and analysis.xct[0].n_projections == 90
    # 16 rows of 0.2 mm: the 1 mm cathode spans five, two of them partial
    assert dice(analysis.xct[0].masks["cathode"], phantom.cathode_mask) >= 0.8
    for i, height_mm in enumerate(analysis.results["position_mm"]):
        truth = mask_on_xcs_grid(phantom.cathode_mask, voxel_z_m=phantom.voxel_z_m, z_centre_m=height_mm * 1e-3,
                                 thickness_m=0.25e-3)  # fmt: skip
        assert dice(analysis.results["region_mask"][i], truth >= 0.5) >= 0.9


def test_the_run_file_shows_the_results_through_its_links(runs):
    run = runs[0.0]
    analysis = run["analysis"]
    with h5py.File(run["path"], "r") as file:
        xcs, xct = file["entry/xcs"], file["entry/xct"]
        np.testing.assert_array_equal(xcs["emf_map"][()], np.asarray(analysis.results["emf_map"]))
        assert xcs["emf_map"].shape == (2, 80, 80) and xcs["spectra"].shape == (80, 80, 1000)
        assert xcs["energy"].shape == (1001,) and xcs["energy"].attrs["units"] == "keV"
        assert xcs.attrs["charge_sharing"] == "sum" and xcs.attrs["incident_keV"] == 114.64
        assert xcs.attrs["pedestal_source"] == "config"
        assert xcs["event_counters/merged"].shape == (2,)
        assert np.all(np.isfinite(xcs["voltage"][()])) and np.all(np.isfinite(xcs["capacity_mah"][()]))
        assert xcs["voltage"][0] == pytest.approx(run["bl"].potentiostat.voltage.get(), abs=0.05)
        assert xcs["potentiostat/time"].size >= 2
        assert xct["reconstruction"].shape == (1, 16, 80, 80) and xct["reconstruction"].attrs["units"] == "1/m"
        assert set(xct["masks"]) >= {"cathode", "casing", "anode"} and xct.attrs["ring_removal"] == "mirror"
        received = (xcs.attrs["frames_received_live"], xcs.attrs["frames_backfilled"], xcs.attrs["frames_unrecovered"])
    with RunFileReader(run["path"]) as reader:  # how the frames came: every recorded one, live
        recorded = sum(stream.n_frames for stream in reader.summary().streams)
    assert received == (recorded, 0, 0)
    assert analysis.report()[len(analysis.files)].startswith(f"frames: {recorded} live, 0 from the recorder's file")
    png = analysis.files["png"]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_a_replayed_run_gives_the_live_results_exactly(runs, tmp_path):
    run = runs[0.0]
    config = XcsctAnalysisConfig(**{**run["config"].__dict__, "out_dir": tmp_path, "figure": False})
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        consumer = consume(documents, frames, config)
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            with RunFileReader(run["path"]) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            wait_until(lambda: len(consumer.consumer.finished) == 1, timeout_s=60)
        finally:
            replayed: XcsctAnalysis = consumer.stop().finished[0]
    live = run["analysis"]
    with h5py.File(live.files["xcs"], "r") as a, h5py.File(replayed.files["xcs"], "r") as b:
        names: list[str] = []
        a.visit(lambda name: names.append(name) if isinstance(a[name], h5py.Dataset) else None)
        assert "entry/xcs/emf_map" in names and "entry/xcs/spectra" in names
        for name in names:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
    np.testing.assert_array_equal(live.xct[0].volume_per_m, replayed.xct[0].volume_per_m)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"batch_frames": 0}, "batch_frames"),
        ({"xct_n_pixels": 100}, "xct_n_pixels"),
        ({"ring_removal": "wavelet"}, "ring_removal"),
        ({"angle_deg": 0.0}, "angle_deg"),
        ({"region_component": "lid"}, "region_component"),
        ({"dark_frames_path": None}, "dark_frames_path"),
        ({"gradients_path": "missing.txt"}, "gradients_path"),
        ({"xct_row_height_m": -1.0}, "xct_row_height_m"),
    ],
)
def test_the_config_names_the_bad_key(tmp_path, overrides, key):
    bl = sim_xcsct_beamline(n_z=16)
    with pytest.raises(ConfigError, match=f"xcs_analysis.{key}"):
        analysis_config(tmp_path, tmp_path, bl, **overrides)


def test_products_hold_the_last_acquisition_and_xct_scan(runs):
    """What the dashboard shows of a finished run: the last EMF map and its σ on the cathode
    region, the EMF of every acquisition against the potentiostat, the XCT slice with its
    segmentation, each as the analysis holds it, through the wire."""
    from streaming.analysis.xcsct.products import xcsct_products
    from streaming.wire.products import decode_product, encode_product

    analysis = runs[0.9]["analysis"]
    products = {p.name: decode_product(encode_product(p)) for p in xcsct_products(analysis, lambda _: set())}
    assert set(products) == {"xcs.spectrum", "xcs.emf", "xcs.series", "xct.slice"}
    results = analysis.results
    emf = products["xcs.emf"]
    np.testing.assert_array_equal(emf.arrays["emf"], np.asarray(results["emf_map"][-1], np.float32))
    np.testing.assert_array_equal(emf.arrays["region"] > 0, results["region_mask"][-1])
    assert emf.values["emf_cathode"] == results["emf_cathode"][-1]
    series = products["xcs.series"]
    np.testing.assert_array_equal(series.arrays["emf_cathode"], results["emf_cathode"])
    np.testing.assert_array_equal(series.arrays["capacity"], analysis.capacity_mah)
    spectrum = products["xcs.spectrum"]
    np.testing.assert_array_equal(spectrum.arrays["counts"], results["spectrum_total"][-1])
    assert spectrum.values["n_frames"] == results["n_frames"][-1]
    xct = analysis.xct[-1]
    slice_ = products["xct.slice"]
    row = slice_.values["row"]
    np.testing.assert_array_equal(slice_.arrays["mu_per_m"], xct.volume_per_m[row])
    labels, components = slice_.arrays["labels"], slice_.values["components"]
    for index, name in enumerate(components, start=1):  # each labelled voxel is in its component
        assert np.all(xct.masks[name][row][labels == index]), name
    np.testing.assert_array_equal(labels > 0, np.any([xct.masks[name][row] for name in components], axis=0))
    assert "cathode" in components and (labels == components.index("cathode") + 1).any()


def test_the_results_open_in_any_hdf5_reader(runs):
    """The XCS and XCT results files: plain h5py in a fresh process reads every dataset."""
    from tests.plain_hdf5 import read_without_plugins

    analysis = runs[0.0]["analysis"]
    xcs, xct = read_without_plugins(analysis.files["xcs"]), read_without_plugins(analysis.files["xct"])
    spectra = next(value for name, value in xcs.items() if name.endswith("/spectra"))
    assert spectra[1] == "gzip" and spectra[2] == float(analysis.latest_cube.sum())
    assert any(name.endswith("/reconstruction") for name in xct)


def test_the_dashboard_draws_the_xcs_products(runs):
    """The page's XCS-CT panels from a finished run's products: the spectrum, the EMF map and
    its σ on the region, the EMF against capacity, the XCT slice with its outline."""
    from bokeh.document import Document

    from streaming.analysis.xcsct.products import xcsct_products
    from streaming.app.dashboard_page import DashboardSession
    from streaming.app.dashboard_store import ProductStore

    analysis = runs[0.9]["analysis"]
    products = {p.name: p for p in xcsct_products(analysis, lambda _: set())}
    page = DashboardSession(ProductStore("tcp://127.0.0.1:1"), Document())  # never started: fed by hand
    page._draw_spectrum(products["xcs.spectrum"])
    page._draw_emf(products["xcs.emf"])
    page._draw_emf_series(products["xcs.series"])
    page._draw_xct(products["xct.slice"])
    np.testing.assert_array_equal(page.emf_source.data["image"][0], products["xcs.emf"].arrays["emf"])
    sigma = page.sigma_source.data["image"][0]
    assert np.isnan(sigma[~analysis.results["region_mask"][-1]]).all()
    assert len(page.emf_series_source.data["emf"]) == len(analysis.results["emf_cathode"])
    assert len(page.outline_source.data["x"]) > 0 and "XCT scan" in page.xct_plot.title.text
    assert f"{analysis.results['emf_cathode'][-1]:.4f}" in page.emf_plot.title.text


def test_only_the_latest_xct_scan_keeps_its_volume_and_every_scan_its_cathode_volume(tmp_path):
    """Memory must not grow with a run's hundreds of XCT scans (the soak found +35 GB/h)."""
    from streaming.analysis.xcsct.xct import XctResult, write_xct

    def scan(index: int, cathode_rows: int) -> XctResult:
        volume = np.full((4, 6, 6), float(index), np.float32)
        cathode = np.zeros((4, 6, 6), bool)
        cathode[:cathode_rows] = True
        return XctResult(index, float(index), volume, {"cathode": cathode}, (1.0,), 1e-4, 0.0, 90,
                         cathode_voxels=int(cathode.sum()))  # fmt: skip

    results = [scan(0, 1).summary(), scan(1, 2).summary(), scan(2, 3)]
    assert all(r.volume_per_m.size == 0 and not r.masks for r in results[:-1])
    with h5py.File(tmp_path / "xct.h5", "w") as file:
        write_xct(file.create_group("entry"), results, {"pixel_size_m": 1e-4})
        xct = file["entry/xct"]
        np.testing.assert_allclose(xct["cathode_volume_m3"][()], np.array([36, 72, 108]) * 1e-4 * 1e-4**2)
        assert xct["reconstruction"].shape == (1, 4, 6, 6) and xct["reconstruction"][0, 0, 0, 0] == 2.0
