"""The plans on EPICS devices: the simulated XRD-CT end station's IOC (``operando sim-ioc --station
xrdct``, caproto and p4p, a process of its own), its Pilatus' frames over PV Access through the
bridge onto the frame channel, recorded; the same plan on the simulated devices beside it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from bluesky.utils import FailedStatus

from devices import FrameSink, sim_xrdct_beamline
from plans import xrdct_zigzag
from streaming.app.bridge import PvaFrameBridge
from streaming.errors import DeviceError
from streaming.store.recorder import RecorderThread
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher
from tests import CA_SERVER_PORT, PVA_SERVER_PORT
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed
from tests.unit.devices.test_sim_ioc import _listening

ROOT = Path(__file__).resolve().parents[3]
PREFIX = f"XRDTEST{os.getpid()}:"
N_ANGLES = 4  # lines of the tiny cell's 64 frames: enough to compare


@pytest.fixture(scope="module")
def xrdct_ioc() -> Iterator[subprocess.Popen]:
    command = [sys.executable, "-m", "streaming.app.cli", "sim-ioc", "--station", "xrdct", "--prefix", PREFIX,
               "--port", str(CA_SERVER_PORT), "--pva-port", str(PVA_SERVER_PORT), "--speed", "60"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: process.poll() is not None or _listening(CA_SERVER_PORT) and _listening(PVA_SERVER_PORT),
                   timeout_s=60)  # fmt: skip
        assert process.poll() is None, f"the IOC did not start: {process.communicate()[1][-2000:]}"
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, f"the IOC did not stop cleanly ({process.returncode}): {stderr[-2000:]}"


@pytest.fixture
def epics_station(xrdct_ioc, tmp_path):
    from devices.epics import EpicsAreaDetector, EpicsAxis, EpicsShutter

    sink = FrameSink(run_directory=tmp_path / "epics")  # for the StreamResource: where the recorder writes
    devices = {
        "pilatus": EpicsAreaDetector(f"{PREFIX}pilatus:", name="pilatus", sink=sink),
        "translation": EpicsAxis(f"{PREFIX}translation", name="translation"),
        "rotation": EpicsAxis(f"{PREFIX}rotation", name="rotation"),
        "shutter": EpicsShutter(f"{PREFIX}shutter:", name="shutter"),
    }
    for device in devices.values():
        device.wait_for_connection(timeout=30)
    return sink, devices


def _record(RE, out_dir: Path, plan_for, *, bridge_pv: str | None = None) -> tuple[Path, list, PvaFrameBridge | None]:
    """Run ``plan_for(frames)`` with a recorder (and the bridge from ``bridge_pv``) on real sockets."""
    emitted: list = []
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        recorder = RecorderThread(recorder_config(out_dir, documents, frames))
        bridge, stop, thread, subscriber = None, threading.Event(), None, None
        tokens = [RE.subscribe(documents), RE.subscribe(lambda name, doc: emitted.append((name, doc)))]
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            if bridge_pv is not None:
                subscriber = DocumentSubscriber(documents.address)
                bridge = PvaFrameBridge(bridge_pv, "pilatus", documents=subscriber, frames=frames)
                thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
                documents.wait_for_subscribers(2, 10)
                bridge.start()
                thread.start()
            plan, tokens_of_plan = plan_for(None if bridge_pv else frames)
            tokens += tokens_of_plan
            try:
                RE(plan)
            finally:
                wait_until_closed(recorder.recorder)
        finally:
            for token in tokens:
                RE.unsubscribe(token)
            stop.set()
            if thread is not None:
                thread.join(10)
                bridge.close()
                subscriber.close()
            done = recorder.stop()
    (path,) = done.files.values()
    return path, emitted, bridge


def _layout(path: Path) -> dict[str, tuple]:
    found: dict[str, tuple] = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: found.__setitem__(name, (item.shape, item.dtype.str))
                        if isinstance(item, h5py.Dataset) else None)  # fmt: skip
    return found


def test_a_zigzag_on_the_epics_station_records_what_the_simulated_station_records(RE, tmp_path, epics_station):
    sink, epics = epics_station
    simulated = sim_xrdct_beamline(preset="tiny")
    kwargs = {**simulated.zigzag_kwargs(), "n_angles": N_ANGLES, "angle_range": (0.0, 180.0)}

    def simulated_plan(frames):
        simulated.sink.publisher, simulated.sink.run_directory = frames, tmp_path / "simulated"
        return xrdct_zigzag(simulated.pilatus, simulated.translation, simulated.rotation, **kwargs), [
            RE.subscribe(simulated.sink)]

    def epics_plan(_):
        return xrdct_zigzag(epics["pilatus"], epics["translation"], epics["rotation"],
                            **{**kwargs, "shutter": epics["shutter"]}), [RE.subscribe(sink)]  # fmt: skip

    expected_path, _, _ = _record(RE, tmp_path / "simulated", simulated_plan)
    path, emitted, bridge = _record(RE, tmp_path / "epics", epics_plan, bridge_pv=f"{PREFIX}pilatus:Pva1:Image")

    n_frames = N_ANGLES * kwargs["n_translations"]
    assert (bridge.counts.sent, bridge.counts.missing, bridge.counts.invalid) == (n_frames, 0, 0)
    (stop,) = [doc for name, doc in emitted if name == "stop"]
    assert stop["exit_status"] == "success"
    (resource,) = [doc for name, doc in emitted if name == "stream_resource"]
    assert resource["uri"] == path.as_uri()  # the StreamResource points at the recorded file
    assert [doc for name, doc in emitted if name == "stream_datum"][-1]["indices"]["stop"] == n_frames
    layout, expected_layout = _layout(path), _layout(expected_path)
    frames_key = "entry/instrument/pilatus/data"
    assert layout[frames_key] == expected_layout[frames_key] == ((n_frames, *simulated.pilatus.frame_shape), "<i4")
    missing = {key for key in expected_layout if key.startswith("entry/instrument/pilatus")} - set(layout)
    assert not missing, f"the EPICS run's file lacks {sorted(missing)}"
    with h5py.File(path, "r") as got, h5py.File(expected_path, "r") as expected:
        # the same pixels, frame by frame: the IOC's detector saw the cell where its axes put it
        np.testing.assert_array_equal(got[frames_key][:], expected[frames_key][:])
        receipt = {"data", "timestamp", "recv_time", "arrival"}  # when frames came: clocks and channels differ
        compared = [key for key in expected_layout if key.startswith("entry/instrument/pilatus/")
                    and key.rsplit("/", 1)[-1] not in receipt]  # fmt: skip
        assert {"entry/instrument/pilatus/indices/angle", "entry/instrument/pilatus/positions/translation"} <= set(
            compared)  # fmt: skip
        for key in compared:  # sequence, indices and positions (where the stages were: the same trapezoids)
            np.testing.assert_allclose(got[key][:], expected[key][:], atol=1e-6, err_msg=key)


def test_a_trigger_the_axis_never_reaches_fails_the_acquisition_with_the_iocs_reason(RE, epics_station):
    sink, epics = epics_station
    from bluesky import plan_stubs as bps

    from devices.streaming_detector import PositionTriggered
    from plans.stubs import fly

    translation, pilatus = epics["translation"], epics["pilatus"]
    RE(bps.mv(translation, 0.0))
    acquisition = PositionTriggered(translation, positions=(0.5, 1.0, 9.0), exposure_s=0.01, counter="translation",
                                    counter_values=(0, 1, 2))  # fmt: skip
    token = RE.subscribe(sink)
    try:
        with pytest.raises(FailedStatus) as failed:
            # 9 mm is beyond the move: the detector makes two frames and says why the third never came
            RE(_open_run(fly(pilatus, acquisition, move=(translation, 2.0)), pilatus))
    finally:
        RE.unsubscribe(token)
    assert isinstance(failed.value.__cause__, DeviceError) or "trigger" in str(failed.value)
    assert pilatus.state.get(use_monitor=False) == "Error"
    assert "trigger missed" in pilatus.message.get(use_monitor=False)


def _open_run(plan, detector):
    from bluesky import plan_stubs as bps
    from bluesky import preprocessors as bpp

    def inner():
        yield from bps.declare_stream(detector, name=detector.name, collect=True)
        yield from plan

    return bpp.run_wrapper(inner())
