"""The XCS-CT plans on EPICS devices: the simulated XCS-CT end station's IOC (``operando sim-ioc
--station xcsct``) in a process of its own, the PCO.Edge's frames and the HEXITEC's batches over
PV Access through the bridge, recorded; the same plans on the simulated devices beside them."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import h5py
import numpy as np
import pytest
from bluesky.utils import FailedStatus

from devices import FrameSink, parse_protocol, sim_xcsct_beamline
from plans import operando_xcsct, xcs_acquire, xct_scan
from tests.conftest import wait_until
from tests.unit.devices.sim_station import connected, layout, record, sim_ioc

PREFIX = f"XCSTEST{os.getpid()}:"
PVS = {"pco": f"{PREFIX}pco:Pva1:Image", "hexitec": f"{PREFIX}hexitec:Pva1:Image"}
RECEIPT = {"timestamp", "recv_time", "arrival"}  # when frames came: the clocks and channels differ


@pytest.fixture
def xcsct_ioc() -> Iterator:
    with sim_ioc("xcsct", PREFIX, "--speed", "600") as process:
        yield process


def _epics_station(tmp_path):
    from devices.epics import EpicsAreaDetector, EpicsAxis, EpicsBeamShaper, EpicsPotentiostat, EpicsShutter

    sink = FrameSink(run_directory=tmp_path / "epics")
    devices = {
        "pco": EpicsAreaDetector(f"{PREFIX}pco:", name="pco", sink=sink),
        "hexitec": EpicsAreaDetector(f"{PREFIX}hexitec:", name="hexitec", sink=sink),
        "rotation": EpicsAxis(f"{PREFIX}rotation", name="rotation"),
        "translation": EpicsAxis(f"{PREFIX}translation", name="translation"),
        "vertical": EpicsAxis(f"{PREFIX}vertical", name="vertical"),
        "shutter": EpicsShutter(f"{PREFIX}shutter:", name="shutter"),
        "beam": EpicsBeamShaper(f"{PREFIX}beam:", name="beam"),
        "potentiostat": EpicsPotentiostat(f"{PREFIX}potentiostat:", name="potentiostat"),
    }
    return sink, connected(devices)


def _on_simulated(RE, simulated, out_dir, make_plan):
    """``record``'s plan_for: the plan on the simulated station, its frames on the channel."""

    def plan_for(frames):
        simulated.sink.publisher, simulated.sink.run_directory = frames, out_dir
        return make_plan(vars(simulated)), [RE.subscribe(simulated.sink)]

    return plan_for


def _on_epics(RE, sink, devices, make_plan):
    """``record``'s plan_for: the plan on the EPICS station (its frames come through the bridges)."""
    return lambda _: (make_plan(devices), [RE.subscribe(sink)])


def _compare(path, expected_path, streams):
    got_layout, expected_layout = layout(path), layout(expected_path)
    with h5py.File(path, "r") as got, h5py.File(expected_path, "r") as expected:
        for stream in streams:
            keys = [key for key in expected_layout if key.startswith(f"entry/instrument/{stream}/")
                    and key.rsplit("/", 1)[-1] not in RECEIPT]  # fmt: skip
            assert f"entry/instrument/{stream}/data" in keys
            for key in keys:
                assert got_layout.get(key) == expected_layout[key], key
                # the same pixels, sequence, indices, positions: the IOC's detectors saw the cell
                # where its stages put it, as the simulated ones do
                np.testing.assert_allclose(got[key][:], expected[key][:], atol=1e-6, err_msg=key)


def test_xct_and_xcs_on_the_epics_station_record_what_the_simulated_station_records(RE, tmp_path, xcsct_ioc):
    simulated = sim_xcsct_beamline()
    heights = simulated.cathode_heights_mm(2)
    sink, epics = _epics_station(tmp_path)

    def xct(devices):
        return xct_scan(devices["pco"], devices["rotation"], n_projections=60, exposure=0.02, flats=4, darks=3,
                        shutter=devices["shutter"], sample_stage=devices["translation"], out_position=25.0)  # fmt: skip

    def xcs(devices):
        return xcs_acquire(devices["hexitec"], devices["vertical"], positions=heights, exposure=0.2,
                           beam=devices["beam"], shutter=devices["shutter"])  # fmt: skip

    for make_plan, stream, n_frames in ((xct, "pco", 3 + 4 + 60), (xcs, "hexitec", 2 * round(0.2 * 9118.87))):
        expected, _, _ = record(RE, tmp_path / "simulated", _on_simulated(RE, simulated, tmp_path / "simulated",
                                                                          make_plan))  # fmt: skip
        path, emitted, bridges = record(RE, tmp_path / "epics", _on_epics(RE, sink, epics, make_plan), bridge_pvs=PVS)
        assert [doc["exit_status"] for name, doc in emitted if name == "stop"] == ["success"]
        counts = {bridge.stream: bridge.counts for bridge in bridges}
        # the HEXITEC's frames travel in batches, and are counted frame by frame
        assert (counts[stream].sent, counts[stream].missing, counts[stream].invalid) == (n_frames, 0, 0)
        _compare(path, expected, [stream])


def test_the_operando_plan_runs_on_the_epics_station_and_records_the_simulated_runs_layout(RE, tmp_path, xcsct_ioc):
    simulated = sim_xcsct_beamline(sample_interval_s=1.0)
    sink, epics = _epics_station(tmp_path)
    capacity_ah = 0.5 * epics["potentiostat"].limits.max_current_a
    protocol = parse_protocol("CC charge to 4.2 V at C/10", capacity_ah=capacity_ah)  # longer than two repeats

    def operando(devices):
        return operando_xcsct(devices["potentiostat"], devices["pco"], devices["hexitec"], devices["rotation"],
                              devices["vertical"], protocol=protocol, n_projections=30,
                              xcs_positions_mm=simulated.cathode_heights_mm(2), xct_exposure=0.05, xcs_exposure=0.05,
                              flats=2, darks=2, shutter=devices["shutter"], beam=devices["beam"],
                              sample_stage=devices["translation"], out_position=25.0, max_repeats=2)  # fmt: skip

    expected, _, _ = record(RE, tmp_path / "simulated", _on_simulated(RE, simulated, tmp_path / "simulated",
                                                                      operando))  # fmt: skip
    path, emitted, bridges = record(RE, tmp_path / "epics", _on_epics(RE, sink, epics, operando), bridge_pvs=PVS)
    assert [doc["exit_status"] for name, doc in emitted if name == "stop"] == ["success"]
    assert all(bridge.counts.missing == 0 for bridge in bridges)
    got_layout, expected_layout = layout(path), layout(expected)
    frames = {key: shape for key, shape in expected_layout.items() if key.endswith("/data")}
    assert frames and {key: got_layout.get(key) for key in frames} == frames  # every stream, every frame
    missing = set(expected_layout) - set(got_layout)
    assert not missing, f"the EPICS run's file lacks {sorted(missing)}"
    voltages = [doc["data"]["potentiostat_voltage"] for name, doc in emitted
                if name == "event" and "potentiostat_voltage" in doc["data"]]  # fmt: skip
    assert len(voltages) > 2 and max(voltages) > min(voltages)  # the IOC's cell charged while it was imaged


def test_an_ioc_killed_mid_acquisition_fails_the_run_keeps_the_file_and_counts_the_loss(RE, tmp_path, xcsct_ioc):
    sink, epics = _epics_station(tmp_path)
    heights = sim_xcsct_beamline().cathode_heights_mm(1)
    exposure_s = 5.0
    n_frames = round(exposure_s * 9118.87)

    def kill_once_frames_flow() -> None:
        wait_until(lambda: epics["hexitec"].images_done.get() >= 3000, timeout_s=60)
        os.kill(xcsct_ioc.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_once_frames_flow, daemon=True)
    killer.start()
    def xcs(devices):
        return xcs_acquire(devices["hexitec"], devices["vertical"], positions=heights, exposure=exposure_s,
                           beam=devices["beam"])  # fmt: skip

    with pytest.raises(FailedStatus) as failed:
        record(RE, tmp_path / "epics", _on_epics(RE, sink, epics, xcs), bridge_pvs=PVS)
    killer.join(10)
    (path,) = (tmp_path / "epics").glob("*.h5")
    made = epics["hexitec"].get_index()  # what the detector said it made before it went
    assert 3000 <= made < n_frames
    error = str(failed.value.args[0].exception())
    assert f"hexitec: the IOC was lost mid-acquisition; {made} of {n_frames} frames made" in error
    with h5py.File(path, "r") as file:  # readable, with every frame that left the IOC
        recorded = file["entry/instrument/hexitec/data"].shape[0]
        assert made - 1000 <= recorded <= made  # at most the batch under way when it died
        np.testing.assert_array_equal(file["entry/instrument/hexitec/sequence"][:], np.arange(recorded))
