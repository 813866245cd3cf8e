"""The plans under a real RunEngine with the simulated devices, frames through real sockets:
document validity, frame placement, zigzag, StreamDatum bookkeeping, operando alternation,
safety on failure/abort/pause, and the usual bluesky callbacks."""

from __future__ import annotations

import io
import itertools
import threading
from collections import Counter, defaultdict
from contextlib import redirect_stdout

import event_model
import h5py
import numpy as np
import pytest
from bluesky.callbacks import LiveTable
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.utils import FailedStatus, RunEngineInterrupted

from devices import FrameSink, parse_protocol, sim_xcsct_beamline, sim_xrdct_beamline
from plans import ScanProgress, operando_xcsct, operando_xrdct, run_protocol, xcs_acquire, xct_scan, xrdct_zigzag
from plans.xct import DARK, FLAT, PROJECTION
from streaming.errors import DeviceError, LimitError
from streaming.store.recorder import RecorderThread
from streaming.wire.transport import DocumentPublisher, FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed


class FrameCollector:
    """Receive every frame of the channel in a thread (a batch's one by one): headers, and the
    data of one frame in ``keep_every``."""

    def __init__(self, address: str, keep_every: int = 0) -> None:
        self.subscriber = FrameSubscriber(address)
        self.keep_every = keep_every
        self.frames: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            received = self.subscriber.recv(timeout_s=0.05)
            for frame in received.frames() if received is not None else ():  # a batch: its frames
                keep = self.keep_every and frame.header.seq % self.keep_every == 0
                self.frames.append((frame.header, np.array(frame.data) if keep else None))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.subscriber.close()


@pytest.fixture
def frame_channel():
    """A frame publisher that blocks instead of dropping, with a collector subscribed."""
    with FramePublisher(LOOPBACK, block_when_full=True, linger_s=1) as publisher:
        collector = FrameCollector(publisher.address, keep_every=61)
        try:
            publisher.wait_for_subscribers(1, 10)
            yield publisher, collector
        finally:
            collector.close()


def request_pause_from_a_callback(RE) -> None:
    """What Ctrl-C does: ask for a pause at the next checkpoint. From another thread, since
    callbacks run on the RunEngine's loop, which ``request_pause`` waits on."""
    threading.Thread(target=RE.request_pause, kwargs={"defer": True}).start()


def collect_documents(RE) -> list[tuple[str, dict]]:
    documents: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    return documents


def by_name(documents, name):
    return [doc for n, doc in documents if n == name]


# -- XRD-CT ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xrdct_simulation():
    return sim_xrdct_beamline(preset="tiny").pilatus.simulation


def xrdct_beamline(simulation, sink):
    beamline = sim_xrdct_beamline(preset="tiny", sink=sink)
    beamline.pilatus.simulation = simulation  # the same cell, built once per module
    return beamline


def test_zigzag_streams_every_frame_once_placed_by_its_indices(RE, frame_channel, xrdct_simulation):
    publisher, collector = frame_channel
    bl = xrdct_beamline(xrdct_simulation, FrameSink(publisher))
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    kwargs = bl.zigzag_kwargs()
    kwargs["n_angles"] = n_angles = 16  # every third angle of the simulated cell
    n_translations = kwargs["n_translations"]
    RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **kwargs))
    wait_until(lambda: len(collector.frames) >= n_angles * n_translations)

    # every document is valid against event-model's schemas
    for name, doc in documents:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
    (start,) = by_name(documents, "start")
    assert start["plan_name"] == "xrdct_zigzag" and start["shape"] == [n_angles, n_translations]
    assert start["snaking"] == [False, True] and start["motors"] == ["rotation", "translation"]
    assert start["extents"][1] == list(kwargs["translation_range"]) and start["hints"]["dimensions"]
    assert start["geometry"]["wavelength"] == pytest.approx(xrdct_simulation.integrator.wavelength)
    assert by_name(documents, "stop")[0]["exit_status"] == "success"

    headers = [header for header, _ in collector.frames]
    assert len(headers) == n_angles * n_translations
    assert {h.run_uid for h in headers} == {start["uid"]}
    assert [h.seq for h in headers] == list(range(len(headers)))
    placed = Counter((h.indices["angle"], h.indices["translation"]) for h in headers)
    assert set(placed) == {(a, t) for a in range(n_angles) for t in range(n_translations)}
    assert set(placed.values()) == {1}

    lines = defaultdict(list)
    for h in headers:
        lines[h.indices["angle"]].append(h)
    step_mm = np.diff(kwargs["translation_range"])[0] / (n_translations - 1)
    for angle_index, line in lines.items():
        order = [h.indices["translation"] for h in line]
        positions = np.array([h.positions["translation"] for h in line])
        # even lines forward, odd lines backward; the frame centre sits on its nominal point
        assert order == (sorted(order) if angle_index % 2 == 0 else sorted(order, reverse=True))
        nominal = kwargs["translation_range"][0] + step_mm * np.array(order)
        assert positions == pytest.approx(nominal, abs=1e-9)
        rotations = np.array([h.positions["rotation"] for h in line])
        assert rotations == pytest.approx(np.full(len(line), 180.0 * angle_index / n_angles))
        times = np.array([h.timestamp for h in line])
        assert np.diff(times) == pytest.approx(np.full(len(times) - 1, kwargs["exposure"]), abs=1e-5)
    angles = sorted({h.positions["rotation"] for h in headers})
    assert angles[0] == 0.0 and angles[-1] == pytest.approx(180.0 * (1 - 1 / n_angles))

    # the detector saw the cell where the stages put it: frames are the simulator's rays
    for header, data in collector.frames[::61]:
        angle_index = int(np.argmin(np.abs(xrdct_simulation.angles_deg - header.positions["rotation"])))
        assert angle_index == 3 * header.indices["angle"]
        expected = xrdct_simulation.frame(angle_index, header.indices["translation"])
        np.testing.assert_array_equal(data, expected)

    # the frames are external assets: one StreamResource, contiguous StreamDatum indices
    (resource,) = by_name(documents, "stream_resource")
    assert resource["data_key"] == "pilatus_image" and resource["parameters"]["dataset"].endswith("pilatus/data")
    datums = by_name(documents, "stream_datum")
    assert len(datums) == n_angles
    assert datums[0]["indices"]["start"] == 0 and datums[-1]["indices"]["stop"] == len(headers)
    for before, after in itertools.pairwise(datums):
        assert after["indices"]["start"] == before["indices"]["stop"]
        assert after["seq_nums"]["start"] == before["seq_nums"]["stop"]
    assert not any("pilatus_image" in event["data"] for event in by_name(documents, "event"))


def test_a_recorded_zigzag_run_holds_the_frames_its_stream_resource_points_at(RE, tmp_path, xrdct_simulation):
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        thread = RecorderThread(recorder_config(tmp_path, documents, frames))
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            bl = xrdct_beamline(xrdct_simulation, FrameSink(frames, run_directory=tmp_path))
            RE.subscribe(bl.sink)
            RE.subscribe(documents)
            emitted = collect_documents(RE)
            kwargs = bl.zigzag_kwargs()
            kwargs["n_angles"] = 6  # six lines of the tiny cell are enough here
            RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **kwargs))
            wait_until_closed(thread.recorder)
        finally:
            thread.stop()
    (resource,) = by_name(emitted, "stream_resource")
    path = resource["uri"].removeprefix("file://")
    n_frames = by_name(emitted, "stream_datum")[-1]["indices"]["stop"]
    with h5py.File(path, "r") as file:
        data = file[resource["parameters"]["dataset"]]
        assert data.shape == (n_frames, *xrdct_simulation.detector.shape)
        assert n_frames == 6 * kwargs["n_translations"]
        np.testing.assert_array_equal(file[resource["parameters"]["sequence"]][:], np.arange(n_frames))
        # line 1 is at 30°: the detector sees the simulated cell's ray nearest to that angle
        angle_index = int(np.argmin(np.abs(xrdct_simulation.angles_deg - 30.0)))
        expected = xrdct_simulation.frame(angle_index, kwargs["n_translations"] - 1)
        np.testing.assert_array_equal(data[kwargs["n_translations"]], expected)


def test_pause_at_a_line_boundary_then_resume_loses_and_repeats_nothing(RE, frame_channel, xrdct_simulation):
    publisher, collector = frame_channel
    bl = xrdct_beamline(xrdct_simulation, FrameSink(publisher))
    RE.subscribe(bl.sink)
    kwargs = bl.zigzag_kwargs()
    kwargs["n_angles"] = 8
    n_translations = kwargs["n_translations"]
    lines_seen = []

    def pause_after_third_line(name, doc):
        if name == "event":
            lines_seen.append(doc["seq_num"])
            if len(lines_seen) == 3:
                request_pause_from_a_callback(RE)

    RE.subscribe(pause_after_third_line)
    with pytest.raises(RunEngineInterrupted):
        RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **kwargs))
    assert RE.state == "paused"
    n_lines = len(lines_seen)
    wait_until(lambda: len(collector.frames) >= n_lines * n_translations)
    assert 3 <= n_lines < 8 and len(collector.frames) == n_lines * n_translations  # whole lines only
    RE.resume()
    wait_until(lambda: len(collector.frames) >= 8 * n_translations)
    placed = Counter((h.indices["angle"], h.indices["translation"]) for h, _ in collector.frames)
    assert len(placed) == 8 * n_translations and set(placed.values()) == {1}


def test_a_fly_speed_beyond_the_axis_is_refused_before_anything_moves(RE, xrdct_simulation):
    bl = xrdct_beamline(xrdct_simulation, FrameSink())
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    kwargs = bl.zigzag_kwargs(exposure_s=0.001)  # 0.17 mm per ms is beyond the hexapod's 25 mm/s
    before = (bl.translation.position, bl.rotation.position, bl.clock.time())
    with pytest.raises(LimitError, match="lengthen the exposure"):
        RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **kwargs))
    assert documents == [] and (bl.translation.position, bl.rotation.position, bl.clock.time()) == before


def test_frames_need_an_open_run_the_sink_follows(RE, xrdct_simulation):
    bl = xrdct_beamline(xrdct_simulation, FrameSink())  # not subscribed to the RunEngine
    with pytest.raises(DeviceError, match=r"RE.subscribe\(sink\)"):
        RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **bl.zigzag_kwargs()))


def test_best_effort_callback_live_table_and_progress_follow_a_scan(RE, xrdct_simulation, monkeypatch):
    monkeypatch.setattr("tqdm.tqdm.monitor_interval", 0)  # no tqdm monitor thread
    bl = xrdct_beamline(xrdct_simulation, FrameSink())
    RE.subscribe(bl.sink)
    bec = BestEffortCallback()
    bec.disable_plots()
    progress = ScanProgress(file=io.StringIO())
    output = io.StringIO()
    kwargs = bl.zigzag_kwargs()
    kwargs["n_angles"] = 8
    with redirect_stdout(output):
        RE.subscribe(bec)
        RE.subscribe(LiveTable(["rotation_user_readback"]))
        RE.subscribe(progress)
        RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **kwargs))
    table_rows = [line for line in output.getvalue().splitlines() if line.startswith("|") and "rotation" not in line]
    assert len([row for row in table_rows if row.count("|") >= 4]) >= 2 * kwargs["n_angles"]  # BEC's and LiveTable's
    assert progress.frames["pilatus_image"] == kwargs["n_angles"] * kwargs["n_translations"]
    assert progress.events["primary"] == kwargs["n_angles"]


# -- XCT and XCS ----------------------------------------------------------------------------


@pytest.fixture
def xcsct(frame_channel):
    publisher, collector = frame_channel
    return sim_xcsct_beamline(sink=FrameSink(publisher), n_z=16, sample_interval_s=1.0), collector


def test_xct_scan_takes_darks_flats_and_projections_covering_the_range(RE, xcsct):
    bl, collector = xcsct
    collector.keep_every = 1
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    RE(xct_scan(bl.pco, bl.rotation, n_projections=60, exposure=0.02, flats=4, darks=3, shutter=bl.shutter,
                sample_stage=bl.translation, out_position=25.0))  # fmt: skip
    wait_until(lambda: len(collector.frames) >= 67)
    for name, doc in documents:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
    kinds = [h.indices["image_type"] for h, _ in collector.frames]
    assert kinds == [DARK] * 3 + [FLAT] * 4 + [PROJECTION] * 60
    dark, flat, projection = (collector.frames[i][1].astype(float) for i in (0, 3, 7))
    assert dark.mean() == pytest.approx(bl.pco.scan.dark_counts, rel=0.05)
    assert flat.mean() > 100 * dark.mean()
    # the steel can attenuates: a projection is darker than the flat in the middle
    assert projection[:, 30:60].mean() < 0.8 * flat[:, 30:60].mean()
    projections = [h for h, _ in collector.frames if h.indices["image_type"] == PROJECTION]
    angles = np.array([h.positions["rotation"] for h in projections])
    np.testing.assert_allclose(angles, np.arange(60) * 6.0, atol=1e-9)
    assert [h.indices["projection"] for h in projections] == list(range(60))
    assert bl.translation.position == 0.0 and bl.shutter.is_open


def test_xcs_acquire_takes_exposure_times_frame_rate_frames_at_each_height(RE, xcsct):
    bl, collector = xcsct
    RE.subscribe(bl.sink)
    heights = bl.cathode_heights_mm(2)
    RE(xcs_acquire(bl.hexitec, bl.vertical, positions=heights, exposure=0.03, beam=bl.beam, shutter=bl.shutter))
    n_frames = round(0.03 * 9118.87)
    wait_until(lambda: len(collector.frames) >= 2 * n_frames)
    assert bl.beam.shape.get() == "fan" and bl.beam.vertical_gap.get() == pytest.approx(0.25)
    by_position = Counter(h.indices["position"] for h, _ in collector.frames)
    assert by_position == {0: n_frames, 1: n_frames}
    heights_seen = sorted({round(h.positions["vertical"], 9) for h, _ in collector.frames})
    assert heights_seen == pytest.approx(sorted(heights))
    times = np.array([h.timestamp for h, _ in collector.frames[:n_frames]])
    assert np.diff(times) == pytest.approx(np.full(n_frames - 1, 1 / 9118.87), abs=1e-6)
    assert collector.frames[0][1].dtype == np.uint16 and collector.frames[0][1].shape == (80, 80)


# -- operando ---------------------------------------------------------------------------------


def operando_kwargs(bl, **overrides):
    kwargs = dict(
        n_projections=30, xcs_positions_mm=bl.cathode_heights_mm(2), xct_exposure=0.05, xcs_exposure=0.01,
        flats=2, darks=2, shutter=bl.shutter, beam=bl.beam, sample_stage=bl.translation, out_position=25.0,
    )  # fmt: skip
    kwargs.update(overrides)
    return kwargs


def test_operando_xcsct_alternates_xct_and_xcs_while_the_voltage_follows_the_protocol(RE, xcsct):
    bl, collector = xcsct
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    capacity = bl.potentiostat.battery.nominal_capacity_ah
    # a fast charge so that three repeats see the voltage climb
    protocol = parse_protocol("CC charge to 4.3 V at 2C", capacity_ah=capacity)
    RE(operando_xcsct(bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical, protocol=protocol,
                      max_repeats=3, **operando_kwargs(bl)))  # fmt: skip
    for name, doc in documents:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
    descriptors = {doc["uid"]: doc["name"] for doc in by_name(documents, "descriptor")}
    resources = {doc["uid"]: doc["data_key"] for doc in by_name(documents, "stream_resource")}
    # the order of acquisitions: XCT (darks, flats, projections) then XCS (two heights), three times
    order = [resources[doc["stream_resource"]] for doc in by_name(documents, "stream_datum")]
    assert order == (["pco_image"] * 3 + ["hexitec_image"] * 2) * 3
    n_expected = 3 * (2 + 2 + 30 + 2 * round(0.01 * 9118.87))
    wait_until(lambda: len(collector.frames) >= n_expected)
    scans = [(h.stream, h.indices["scan"]) for h, _ in collector.frames]
    blocks = [key for i, key in enumerate(scans) if i == 0 or key != scans[i - 1]]
    assert blocks == [("pco", 0), ("hexitec", 0), ("pco", 1), ("hexitec", 1), ("pco", 2), ("hexitec", 2)]
    # the potentiostat readings are a monitor stream of the same run: voltage rises under charge
    monitor = [doc for doc in by_name(documents, "event") if descriptors[doc["descriptor"]] == "potentiostat"]
    voltages = np.array([doc["data"]["potentiostat_voltage"] for doc in monitor])
    charging = np.array([doc["data"]["potentiostat_mode"] == "constant_current" for doc in monitor])
    assert charging.sum() >= 5 and np.all(np.diff(voltages[charging]) > 0)
    assert voltages.max() <= 4.3 + 1e-9
    (start,) = by_name(documents, "start")
    assert start["protocol"]["steps"][0]["current_a"] == pytest.approx(2 * capacity)
    # the run ended before the protocol: the cell was left at open circuit
    assert bl.potentiostat.mode.get() == "open_circuit" and bl.potentiostat.current.get() == 0.0
    assert not bl.shutter.is_open


def test_operando_ends_when_the_protocol_ends(RE, xcsct):
    bl, _ = xcsct
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    protocol = parse_protocol("rest 20 s", capacity_ah=1.0)
    started = bl.clock.time()
    RE(operando_xcsct(bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical, protocol=protocol,
                      **operando_kwargs(bl)))  # fmt: skip
    elapsed = bl.clock.time() - started
    n_repeats = len(by_name(documents, "stream_datum")) // 5  # 3 XCT + 2 XCS acquisitions each
    assert by_name(documents, "stop")[0]["exit_status"] == "success"
    # repeats went on while the 20 s protocol ran, and no new one started after it ended
    per_repeat = elapsed / n_repeats
    assert elapsed >= 20 and (n_repeats - 1) * per_repeat < 20


def test_an_out_of_limit_protocol_is_refused_before_the_run_or_any_motion(RE, xcsct):
    bl, _ = xcsct
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    before = (bl.rotation.position, bl.vertical.position, bl.clock.time(), bl.potentiostat.battery.state)
    protocol = parse_protocol("CC charge to 4.5 V at C/10", capacity_ah=bl.potentiostat.battery.nominal_capacity_ah)
    with pytest.raises(LimitError, match=r"4\.5 V"):
        RE(operando_xcsct(bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical, protocol=protocol,
                          **operando_kwargs(bl)))  # fmt: skip
    assert documents == []
    assert (bl.rotation.position, bl.vertical.position, bl.clock.time(), bl.potentiostat.battery.state) == before


def charging_operando(bl):
    capacity = bl.potentiostat.battery.nominal_capacity_ah
    protocol = parse_protocol("CC charge to 4.3 V at C/2", capacity_ah=capacity)
    return operando_xcsct(bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical, protocol=protocol,
                          max_repeats=5, **operando_kwargs(bl))  # fmt: skip


def pause_at_event(RE, n: int):
    seen = []

    def callback(name, doc):
        if name == "event":
            seen.append(1)
            if len(seen) == n:
                request_pause_from_a_callback(RE)

    RE.subscribe(callback)


def test_abort_mid_charge_after_a_pause_leaves_the_cell_at_open_circuit(RE, xcsct):
    bl, _ = xcsct
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    pause_at_event(RE, 6)
    with pytest.raises(RunEngineInterrupted):
        RE(charging_operando(bl))
    assert RE.state == "paused"
    # a pause stops the movables: the potentiostat opens the circuit (and can resume)
    assert bl.potentiostat.mode.get() == "open_circuit"
    RE.abort("cell swelling")
    assert bl.potentiostat.mode.get() == "open_circuit" and bl.potentiostat.current.get() == 0.0
    assert by_name(documents, "stop")[0]["exit_status"] == "abort"
    assert not bl.shutter.is_open
    soc = bl.potentiostat.cell_soc()
    bl.clock.advance(3600.0)
    assert bl.potentiostat.cell_soc() == soc  # nothing flows afterwards


def test_pause_then_resume_continues_the_charge(RE, xcsct):
    bl, _ = xcsct
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    pause_at_event(RE, 6)
    with pytest.raises(RunEngineInterrupted):
        RE(charging_operando(bl))
    assert RE.state == "paused" and bl.potentiostat.mode.get() == "open_circuit"
    capacity_at_pause = bl.potentiostat.capacity.get()
    RE.resume()
    assert RE.state == "idle" and by_name(documents, "stop")[0]["exit_status"] == "success"
    # the charge went on after the resume (at open circuit nothing flows), then the run's end
    # opened the circuit
    assert bl.potentiostat.capacity.get() > capacity_at_pause > 0
    assert bl.potentiostat.mode.get() == "open_circuit"


def test_a_failing_acquisition_mid_charge_leaves_the_cell_at_open_circuit(RE, xcsct):
    bl, _ = xcsct
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    capacity = bl.potentiostat.battery.nominal_capacity_ah
    protocol = parse_protocol("CC charge to 4.3 V at C/2", capacity_ah=capacity)
    # 1 ms frames are beyond the PCO's 100 Hz: the camera refuses once the charge is running
    plan = operando_xcsct(bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical, protocol=protocol,
                          **operando_kwargs(bl, xct_exposure=0.001, n_projections=3600))  # fmt: skip
    with pytest.raises((DeviceError, FailedStatus)):
        RE(plan)
    assert bl.potentiostat.mode.get() == "open_circuit" and bl.potentiostat.current.get() == 0.0
    assert by_name(documents, "stop")[0]["exit_status"] == "fail"


def test_operando_xrdct_repeats_scans_tagged_by_repeat(RE, frame_channel, xrdct_simulation):
    publisher, collector = frame_channel
    bl = xrdct_beamline(xrdct_simulation, FrameSink(publisher))
    RE.subscribe(bl.sink)
    documents = collect_documents(RE)
    kwargs = bl.zigzag_kwargs()
    kwargs.pop("poni")
    kwargs["n_angles"] = 4
    protocol = parse_protocol("CC charge to 4.2 V at C/5", capacity_ah=0.6)
    RE(operando_xrdct(bl.potentiostat, bl.pilatus, bl.translation, bl.rotation, protocol=protocol,
                      max_repeats=2, **kwargs))  # fmt: skip
    n = 2 * 4 * kwargs["n_translations"]
    wait_until(lambda: len(collector.frames) >= n)
    placed = Counter((h.indices["scan"], h.indices["angle"], h.indices["translation"]) for h, _ in collector.frames)
    assert len(placed) == n and set(placed.values()) == {1}
    streams = Counter(doc["name"] for doc in by_name(documents, "descriptor"))
    assert streams == {"pilatus": 1, "potentiostat": 1, "lines": 1, "primary": 1}
    assert bl.potentiostat.mode.get() == "open_circuit"


def test_operando_repeats_start_one_interval_apart_on_the_experiment_clock(RE, xcsct):
    bl, collector = xcsct
    RE.subscribe(bl.sink)
    protocol = parse_protocol("rest 100 s", capacity_ah=1.0)
    RE(operando_xcsct(bl.potentiostat, bl.pco, bl.hexitec, bl.rotation, bl.vertical, protocol=protocol,
                      delay=bl.delay, interval_s=30.0, **operando_kwargs(bl)))  # fmt: skip
    first_frames = {}
    wait_until(lambda: len({h.indices["scan"] for h, _ in collector.frames}) >= 4)
    for header, _ in collector.frames:
        first_frames.setdefault(header.indices["scan"], header.timestamp)
    starts = np.array([first_frames[k] for k in sorted(first_frames)])
    assert len(starts) == 4  # at 0, 30, 60 and 90 s of the 100 s protocol
    assert np.diff(starts) == pytest.approx(np.full(3, 30.0), abs=0.5)


def test_run_protocol_cycles_to_the_end_with_the_readings_as_a_stream(RE):
    bl = sim_xcsct_beamline(sample_interval_s=60.0)
    documents = collect_documents(RE)
    capacity = bl.potentiostat.battery.nominal_capacity_ah
    protocol = parse_protocol("CC charge to 4.0 V at 1C; rest 5 min; CC discharge to 3.2 V at 1C", capacity_ah=capacity)
    RE(run_protocol(bl.potentiostat, protocol, delay=bl.delay, poll_s=120.0))
    (start,) = by_name(documents, "start")
    assert start["plan_name"] == "run_protocol" and len(start["protocol"]["steps"]) == 3
    descriptors = {doc["uid"]: doc["name"] for doc in by_name(documents, "descriptor")}
    readings = [doc["data"] for doc in by_name(documents, "event") if descriptors[doc["descriptor"]] == "potentiostat"]
    modes = [r["potentiostat_mode"] for r in readings]
    assert "constant_current" in modes and "rest" in modes
    voltages = np.array([r["potentiostat_voltage"] for r in readings])
    currents = np.array([r["potentiostat_current"] for r in readings])
    assert voltages[currents > 0].max() <= 4.0 + 1e-9 and voltages[currents < 0].min() >= 3.2 - 1e-9
    assert bl.potentiostat.mode.get() == "open_circuit" and by_name(documents, "stop")[0]["exit_status"] == "success"
