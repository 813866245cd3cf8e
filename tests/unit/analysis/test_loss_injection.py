"""Degrade, never fail: recorded runs streamed into the analyses through a proxy that loses
frames (a fraction at random, bursts, the first or last frames, a whole XCT scan), with the
frames lost for good (no recorder's file to fetch them from). Each analysis finishes, writes
its results, says what they were made from, and stays within stated tolerances of the
loss-free run for small losses.

Tolerances (set from the physics, with margin over what these runs give):
- XRD-CT (tiny, one zigzag scan): missing patterns are interpolated from the neighbouring
  lines; the reconstruction's NRMSE against the loss-free one below 0.02 at 1 %, 0.06 at 10 %
  and for bursts of consecutive frames, 0.1 for the first or last 5 %; the cathode's mean NMC
  c within 0.01 Å up to 10 %.
- XCT: missing projections are interpolated along the angle; the cathode mask on the XCS grid
  keeps a Dice of 0.95 with the loss-free one up to 10 %.
- XCS: the EMF and its Poisson sigma come from the frames that arrived; each acquisition's
  cathode EMF stays within 4 combined sigmas of the loss-free one (sigma grows as 1/sqrt(frames)).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from devices import FrameSink, parse_protocol, sim_xcsct_beamline
from plans import operando_xcsct, xrdct_zigzag
from streaming.analysis.consumer import Consumer, ConsumerThread
from streaming.analysis.xcsct import xcsct_analysis_factory
from streaming.analysis.xrdct import xrdct_analysis_factory
from streaming.store.recorder import RecorderThread
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import FrameHeader
from streaming.wire.transport import DocumentPublisher, FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed
from tests.unit.analysis.test_xcsct_analysis import analysis_config as xcsct_config
from tests.unit.analysis.test_xrdct_analysis import analysis_config as xrdct_config
from tests.unit.analysis.test_xrdct_analysis import record_and_analyse

Drop = Callable[[FrameHeader], bool]


class LossyProxy:
    """Frames from ``source`` to a publisher of its own, but those ``drop(header)`` says: a
    detector or a network that loses frames. A batch goes on frame by frame."""

    def __init__(self, source: str, drop: Drop) -> None:
        self.drop = drop
        self.subscriber = FrameSubscriber(source)
        self.publisher = FramePublisher(LOOPBACK, block_when_full=True)
        self.dropped: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            received = self.subscriber.recv(timeout_s=0.05)
            for frame in received.frames() if received is not None else ():
                if self.drop(frame.header):
                    self.dropped[frame.header.stream] += 1
                else:
                    self.publisher.send(frame.header, np.array(frame.data))  # its own buffer: the view is the socket's

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.subscriber.close()
        self.publisher.close(linger_s=0)


def stream_with_loss(path: Path, make_analysis, drop: Drop):
    """Replay ``path`` through a :class:`LossyProxy` into a consumer with no file to fetch
    lost frames from; (the finished analysis, the consumer's errors, frames dropped per stream)."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        proxy = LossyProxy(frames.address, drop)
        consumer = ConsumerThread(Consumer(make_analysis, document_address=documents.address, linger_s=1.0,
                                           frame_address=proxy.publisher.address, backfill=False))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            proxy.publisher.wait_for_subscribers(1, 10)
            with RunFileReader(path) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            wait_until(lambda: len(consumer.consumer.finished) == 1, timeout_s=120)
        finally:
            done = consumer.stop()
            proxy.close()
    return done.finished[0], done.errors, proxy.dropped


def fraction_of(stream: str, n: int, fraction: float, seed: int = 7) -> Drop:
    lost = np.random.default_rng(seed).random(n) < fraction
    return lambda header: header.stream == stream and bool(lost[header.seq])


def bursts_of(stream: str, n: int, n_bursts: int = 5, length: int | None = None, seed: int = 7) -> Drop:
    length = length or n // 50
    starts = np.random.default_rng(seed).choice(n - length, n_bursts, replace=False)
    lost = np.zeros(n, bool)
    for start in starts:
        lost[start : start + length] = True
    return lambda header: header.stream == stream and bool(lost[header.seq])


def first_or_last(stream: str, n: int, part: str, fraction: float = 0.05) -> Drop:
    cut = round(n * fraction)
    return lambda header: header.stream == stream and (header.seq < cut if part == "first" else header.seq >= n - cut)


def either(*drops: Drop) -> Drop:
    return lambda header: any(drop(header) for drop in drops)


def nrmse(image: np.ndarray, reference: np.ndarray) -> float:
    finite = np.isfinite(reference) & np.isfinite(image)
    return float(np.sqrt(np.mean((image[finite] - reference[finite]) ** 2)) / np.ptp(reference[finite]))


# -- XRD-CT -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xrdct_run(_session_run_engine, tmp_path_factory):
    """One tiny zigzag scan, recorded and analysed live without loss; (analysis, run file, simulation)."""
    analysis, path, bl = record_and_analyse(
        _session_run_engine, tmp_path_factory.mktemp("xrdct_loss"),
        lambda bl: xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **bl.zigzag_kwargs()),
    )  # fmt: skip
    return analysis, path, bl.pilatus.simulation


N_PILATUS = 48 * 64


@pytest.mark.parametrize(
    ("drop", "tolerance"),
    [
        (fraction_of("pilatus", N_PILATUS, 0.01), 0.02),
        (fraction_of("pilatus", N_PILATUS, 0.10), 0.06),
        (fraction_of("pilatus", N_PILATUS, 0.50), None),  # finishes and says so; no tolerance
        (bursts_of("pilatus", N_PILATUS), 0.06),
        (first_or_last("pilatus", N_PILATUS, "first"), 0.1),
        (first_or_last("pilatus", N_PILATUS, "last"), 0.1),
    ],
    ids=["1%", "10%", "50%", "bursts", "first-5%", "last-5%"],
)
def test_xrdct_degrades_with_lost_frames(xrdct_run, tmp_path, drop, tolerance):
    reference, path, simulation = xrdct_run
    make = xrdct_analysis_factory(xrdct_config(simulation, tmp_path))
    analysis, errors, dropped = stream_with_loss(path, make, drop)
    n_dropped = dropped["pilatus"]
    assert errors == 0 and analysis.finished and n_dropped > 0
    with h5py.File(analysis.path, "r") as file:  # what it was made from, in the file
        xrdct = file["entry/xrdct"]
        assert xrdct.attrs["patterns_interpolated"] == n_dropped
        assert xrdct.attrs["patterns_placed"] == N_PILATUS - n_dropped
    assert f"{n_dropped} missing patterns interpolated" in analysis.report()[-1]
    assert np.isfinite(analysis.scan.reconstruction).all()
    if tolerance is None:
        return
    assert nrmse(analysis.scan.reconstruction, reference.scan.reconstruction) < tolerance
    if tolerance <= 0.06:
        ours, theirs = (a.series()["mean_NMC532_c"][0] for a in (analysis, reference))
        assert abs(ours - theirs) < 0.01


# -- XCS-CT -----------------------------------------------------------------------------------

N_PROJECTIONS = 90
XCS_EXPOSURE_S = 0.1


@pytest.fixture(scope="module")
def xcsct_run(_session_run_engine, tmp_path_factory):
    """Two XCT + XCS pairs of the coin cell, recorded (no analysis); (run file, config folder, beamline)."""
    folder = tmp_path_factory.mktemp("xcsct_loss")
    run_engine = _session_run_engine
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        bl = sim_xcsct_beamline(sink=FrameSink(frames, run_directory=folder), n_z=16, sample_interval_s=0.5)
        recorder = RecorderThread(recorder_config(folder, documents, frames))
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            run_engine.subscribe(bl.sink)
            run_engine.subscribe(documents)
            run_engine(operando_xcsct(
                bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical,
                protocol=parse_protocol("rest 60 s", capacity_ah=bl.potentiostat.battery.nominal_capacity_ah),
                n_projections=N_PROJECTIONS, xcs_positions_mm=bl.cathode_heights_mm(2), xct_exposure=0.02,
                xcs_exposure=XCS_EXPOSURE_S, flats=4, darks=4, shutter=bl.shutter, beam=bl.beam,
                sample_stage=bl.translation, out_position=25.0, max_repeats=2,
            ))  # fmt: skip
            wait_until_closed(recorder.recorder)
        finally:
            run_engine.dispatcher.unsubscribe_all()
            (path,) = recorder.stop().files.values()
    return path, folder, bl


@pytest.fixture(scope="module")
def xcsct_reference(xcsct_run, tmp_path_factory):
    path, folder, bl = xcsct_run
    config = xcsct_config(folder / "calibration", tmp_path_factory.mktemp("reference"), bl, figure=False)
    analysis, errors, _ = stream_with_loss(path, xcsct_analysis_factory(config), lambda header: False)
    assert errors == 0 and len(analysis.xct) == 2
    return analysis, config


def _acquisitions(analysis) -> dict[tuple[int, int], tuple[float, float, int]]:
    r = analysis.results
    columns = (r["scan"], r["position"], r["emf_cathode"], r["emf_cathode_sigma"], r["n_frames"])
    return {(s, p): (e, sig, n) for s, p, e, sig, n in zip(*columns, strict=True)}


def _regions(analysis) -> dict[tuple[int, int], np.ndarray]:
    r = analysis.results
    return {(s, p): np.asarray(m, bool) for s, p, m in zip(r["scan"], r["position"], r["region_mask"], strict=True)}


N_PCO = 2 * (N_PROJECTIONS + 4 + 4)
N_HEXITEC = 2 * 2 * round(XCS_EXPOSURE_S * 9118.87)


def _whole_scan(header: FrameHeader) -> bool:
    return header.stream == "pco" and header.indices.get("scan") == 1


@pytest.mark.parametrize(
    ("drop", "small"),
    [
        (either(fraction_of("pco", N_PCO, 0.01), fraction_of("hexitec", N_HEXITEC, 0.01)), True),
        (either(fraction_of("pco", N_PCO, 0.10), fraction_of("hexitec", N_HEXITEC, 0.10)), True),
        (either(fraction_of("pco", N_PCO, 0.50), fraction_of("hexitec", N_HEXITEC, 0.50)), False),
        (either(bursts_of("pco", N_PCO, 2, 4), bursts_of("hexitec", N_HEXITEC)), True),
        (first_or_last("hexitec", N_HEXITEC, "first"), True),
        (first_or_last("hexitec", N_HEXITEC, "last"), True),
        (_whole_scan, False),
    ],
    ids=["1%", "10%", "50%", "bursts", "first-5%", "last-5%", "whole-xct-scan"],
)
def test_xcs_and_xct_degrade_with_lost_frames(xcsct_run, xcsct_reference, tmp_path, drop, small):
    path, folder, bl = xcsct_run
    reference, config = xcsct_reference
    config = xcsct_config(folder / "calibration", tmp_path, bl, figure=False)
    analysis, errors, dropped = stream_with_loss(path, xcsct_analysis_factory(config), drop)
    assert errors == 0 and sum(dropped.values()) > 0 and analysis.files["xcs"].is_file()
    with h5py.File(analysis.files["xcs"], "r") as xcs_file, h5py.File(analysis.files["xct"], "r") as xct_file:
        used, expected = xcs_file["entry/xcs/n_frames"][()], xcs_file["entry/xcs/n_frames_expected"][()]
        received = xct_file["entry/xct/projections_received"][()]
        interpolated = xct_file["entry/xct/projections_interpolated"][()]
    # what each result was made from, against what was lost
    assert int(expected.sum()) == N_HEXITEC and int(used.sum()) == N_HEXITEC - dropped["hexitec"]
    assert np.all(received + interpolated == N_PROJECTIONS)
    if drop is _whole_scan:  # its acquisitions are masked by the scan before, and it says so
        assert len(analysis.xct) == 1 and "XCT scans reduced: 1;" in "\n".join(analysis.report())
        assert all(analysis.results["region_from_xct"])
    if not small:
        return
    ours, theirs = _acquisitions(analysis), _acquisitions(reference)
    assert ours.keys() == theirs.keys()
    for key, (emf_ours, sigma_ours, _) in ours.items():
        emf_theirs, sigma_theirs, _ = theirs[key]
        assert abs(emf_ours - emf_theirs) < 4 * np.hypot(sigma_ours, sigma_theirs), key
    # each XCT scan's cathode, where each acquisition looked (a run keeps only the latest volume)
    ours_regions, theirs_regions = _regions(analysis), _regions(reference)
    assert ours_regions.keys() == theirs_regions.keys() and len({scan for scan, _ in ours_regions}) == 2
    for key, a in ours_regions.items():
        b = theirs_regions[key]
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95, key
