"""The plans on EPICS devices: the simulated XRD-CT end station's IOC (``operando sim-ioc --station
xrdct``, caproto and p4p, a process of its own), its Pilatus' frames over PV Access through the
bridge onto the frame channel, recorded; the same plan on the simulated devices beside it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import h5py
import numpy as np
import pytest
from bluesky.utils import FailedStatus

from devices import FrameSink, parse_protocol, sim_xrdct_beamline
from plans import operando_xrdct, xrdct_zigzag
from streaming.errors import DeviceError
from tests.unit.devices.sim_station import connected, layout, record, sim_ioc

PREFIX = f"XRDTEST{os.getpid()}:"
N_ANGLES = 4  # lines of the tiny cell's 64 frames: enough to compare


@pytest.fixture(scope="module")
def xrdct_ioc() -> Iterator[subprocess.Popen]:
    with sim_ioc("xrdct", PREFIX, "--speed", "60") as process:
        yield process


@pytest.fixture
def epics_station(xrdct_ioc, tmp_path):
    from devices.epics import EpicsAreaDetector, EpicsAxis, EpicsPotentiostat, EpicsShutter

    sink = FrameSink(run_directory=tmp_path / "epics")  # for the StreamResource: where the recorder writes
    devices = {
        "pilatus": EpicsAreaDetector(f"{PREFIX}pilatus:", name="pilatus", sink=sink),
        "translation": EpicsAxis(f"{PREFIX}translation", name="translation"),
        "rotation": EpicsAxis(f"{PREFIX}rotation", name="rotation"),
        "shutter": EpicsShutter(f"{PREFIX}shutter:", name="shutter"),
        "potentiostat": EpicsPotentiostat(f"{PREFIX}potentiostat:", name="potentiostat"),
    }
    return sink, connected(devices)


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

    expected_path, _, _ = record(RE, tmp_path / "simulated", simulated_plan)
    path, emitted, (bridge,) = record(RE, tmp_path / "epics", epics_plan,
                                      bridge_pvs={"pilatus": f"{PREFIX}pilatus:Pva1:Image"})  # fmt: skip

    n_frames = N_ANGLES * kwargs["n_translations"]
    assert (bridge.counts.sent, bridge.counts.missing, bridge.counts.invalid) == (n_frames, 0, 0)
    (stop,) = [doc for name, doc in emitted if name == "stop"]
    assert stop["exit_status"] == "success"
    (resource,) = [doc for name, doc in emitted if name == "stream_resource"]
    assert resource["uri"] == path.as_uri()  # the StreamResource points at the recorded file
    assert [doc for name, doc in emitted if name == "stream_datum"][-1]["indices"]["stop"] == n_frames
    layout_got, expected_layout = layout(path), layout(expected_path)
    frames_key = "entry/instrument/pilatus/data"
    assert layout_got[frames_key] == expected_layout[frames_key] == ((n_frames, *simulated.pilatus.frame_shape), "<i4")
    missing = {key for key in expected_layout if key.startswith("entry/instrument/pilatus")} - set(layout_got)
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
    error = failed.value.args[0].exception()
    assert isinstance(error, DeviceError)
    assert "pilatus: translation: trigger missed" in str(error) and str(error).endswith("2 of 3 frames made")
    assert pilatus.get_index() == 2  # the frames it made are the run's, described to bluesky
    assert pilatus.state.get(use_monitor=False) == "Error"


def _open_run(plan, detector):
    from bluesky import plan_stubs as bps
    from bluesky import preprocessors as bpp

    def inner():
        yield from bps.declare_stream(detector, name=detector.name, collect=True)
        yield from plan

    return bpp.run_wrapper(inner())


def test_the_operando_plan_runs_on_the_epics_station_and_records_the_simulated_runs_layout(
    RE, tmp_path, epics_station
):
    sink, epics = epics_station
    simulated = sim_xrdct_beamline(preset="tiny", sample_interval_s=1.0)
    capacity_ah = 0.5 * epics["potentiostat"].limits.max_current_a
    protocol = parse_protocol("CC charge to 4.2 V at C/10", capacity_ah=capacity_ah)  # longer than two scans
    scan = {**simulated.zigzag_kwargs(), "n_angles": 2, "angle_range": (0.0, 180.0)}

    def operando(devices):
        return operando_xrdct(devices["potentiostat"], devices["pilatus"], devices["translation"],
                              devices["rotation"], protocol=protocol, max_repeats=2,
                              **{**scan, "shutter": devices["shutter"]})  # fmt: skip

    def simulated_plan(frames):
        simulated.sink.publisher, simulated.sink.run_directory = frames, tmp_path / "simulated"
        return operando(vars(simulated)), [RE.subscribe(simulated.sink)]

    expected, _, _ = record(RE, tmp_path / "simulated", simulated_plan)
    path, emitted, (bridge,) = record(RE, tmp_path / "epics", lambda _: (operando(epics), [RE.subscribe(sink)]),
                                      bridge_pvs={"pilatus": f"{PREFIX}pilatus:Pva1:Image"})  # fmt: skip
    assert [doc["exit_status"] for name, doc in emitted if name == "stop"] == ["success"]
    assert (bridge.counts.sent, bridge.counts.missing) == (2 * 2 * scan["n_translations"], 0)
    got_layout, expected_layout = layout(path), layout(expected)
    missing = set(expected_layout) - set(got_layout)
    assert not missing, f"the EPICS run's file lacks {sorted(missing)}"
    assert got_layout["entry/instrument/pilatus/data"] == expected_layout["entry/instrument/pilatus/data"]
    voltages = [doc["data"]["potentiostat_voltage"] for name, doc in emitted
                if name == "event" and "potentiostat_voltage" in doc["data"]]  # fmt: skip
    assert len(voltages) > 2 and max(voltages) > min(voltages)  # the IOC's cell charged while it was scanned
