"""The EPICS device classes against the simulated IOC (``operando sim-ioc``, caproto) on
loopback, through ophyd's pyepics control layer (libca bundled with pyepics: no EPICS install)."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky.utils import FailedStatus
from ophyd.utils import LimitError as OphydLimitError

from devices.ioc.serve import ca_environment
from devices.motion import ClockDelay, Trajectory
from devices.protocol import parse_protocol
from plans.cycling import run_protocol
from plans.stubs import close_shutter
from streaming.errors import LimitError
from tests import CA_SERVER_PORT
from tests.unit.devices.sim_station import ROOT, sim_ioc

PREFIX = f"OPSTEST{os.getpid()}:"
SPEED = 3600.0  # an hour of the cell a second


@pytest.fixture(scope="module")
def ioc() -> Iterator[subprocess.Popen]:
    """The simulated IOC in a process of its own, on the session's Channel Access port
    (``tests/__init__.py`` points this process' CA client there)."""
    client = {key: value for key, value in ca_environment(CA_SERVER_PORT).items() if key.startswith("EPICS_CA_")}
    assert client.items() <= os.environ.items()
    with sim_ioc("xcsct", PREFIX, "--speed", str(SPEED)) as process:
        yield process


def _connected(device, timeout_s: float = 30.0):
    device.wait_for_connection(timeout=timeout_s)
    return device


@pytest.fixture
def axis(ioc):
    from devices.epics import EpicsAxis

    translation = _connected(EpicsAxis(f"{PREFIX}translation", name="translation"))
    translation.stall_at = _connected(_signal(f"{PREFIX}translation:SimStallAt"))
    translation.stall_at.put(math.nan, wait=True)
    yield translation
    translation.stall_at.put(math.nan, wait=True)


def _signal(pv: str, **kwargs):
    from ophyd import EpicsSignal

    return EpicsSignal(pv, name=pv.rsplit(":", 1)[-1].lower(), **kwargs)


@pytest.fixture
def shutter(ioc):
    from devices.epics import EpicsShutter

    return _connected(EpicsShutter(f"{PREFIX}shutter:", name="shutter"))


@pytest.fixture
def potentiostat(ioc):
    from devices.epics import EpicsPotentiostat

    device = _connected(EpicsPotentiostat(f"{PREFIX}potentiostat:", name="potentiostat"))
    device.stop()
    return device


def test_an_axis_moves_on_its_trapezoid_and_reads_back_the_target(RE, axis):
    RE(bps.mv(axis, 0.0))
    started = time.monotonic()
    RE(bps.mv(axis, 4.0))
    elapsed_s = time.monotonic() - started
    profile = Trajectory(0.0, 0.0, 4.0, axis.velocity.get(), axis.acceleration.get())
    assert axis.position == pytest.approx(4.0)
    assert axis.motor_done_move.get() == 1
    assert elapsed_s >= 0.95 * profile.duration_s  # 0.5 s at 10 mm/s with 0.1 s ramps: the IOC kept to the speed


def test_a_target_outside_the_soft_limits_is_refused_by_ophyd_and_by_the_ioc(RE, axis):
    RE(bps.mv(axis, 1.0))
    assert axis.limits == (-30.0, 30.0)
    with pytest.raises(OphydLimitError):
        axis.set(31.0)
    raw_target = _connected(_signal(f"{PREFIX}translation.VAL"))  # no limits checked on this side
    raw_target.put(45.0, wait=True)  # the IOC answers the put with an error
    assert raw_target.get(use_monitor=False) == pytest.approx(1.0)  # the record kept its target
    assert axis.user_readback.get(use_monitor=False) == pytest.approx(1.0)  # and nothing moved
    assert axis.motor_done_move.get(use_monitor=False) == 1


def test_a_stalled_axis_fails_the_plan_with_the_cell_at_open_circuit_and_the_shutter_closed(
    RE, axis, shutter, potentiostat
):
    RE(bps.mv(axis, -5.0))
    axis.stall_at.put(2.0, wait=True)
    capacity_ah = 0.5 * potentiostat.limits.max_current_a  # the IOC's compliance is 2C
    protocol = parse_protocol("CC charge to 4.2 V at C/10", capacity_ah=capacity_ah)

    def line():
        yield from bps.mv(shutter, "open")
        yield from bps.abs_set(potentiostat, protocol)
        yield from bps.mv(axis, 10.0)  # a line of the zigzag: the axis stalls at 2 mm

    with pytest.raises(FailedStatus):
        RE(bpp.finalize_wrapper(line(), close_shutter(shutter)))
    assert axis.position == pytest.approx(2.0)
    assert potentiostat.mode.get() == "open_circuit"  # the RunEngine stopped what the plan had set
    assert potentiostat.running.get() == 0
    assert shutter.status.get() == "closed"


def test_a_protocol_outside_the_limits_is_refused_before_any_pv_is_written(potentiostat):
    table_before = potentiostat.table_setpoint.get(use_monitor=False)
    with pytest.raises(LimitError, match="outside"):
        potentiostat.set(parse_protocol("CC charge to 4.6 V at C/2", capacity_ah=0.01))
    assert list(potentiostat.table_setpoint.get(use_monitor=False)) == list(table_before)
    assert potentiostat.running.get() == 0


def test_the_ioc_itself_refuses_a_step_table_beyond_the_compliance(potentiostat):
    limit_a = potentiostat.limits.max_current_a
    for signal, table in ((potentiostat.table_mode, [1]), (potentiostat.table_setpoint, [10 * limit_a]),
                          (potentiostat.table_limit, [4.2]), (potentiostat.table_duration, [60.0])):  # fmt: skip
        signal.put(table, wait=True)
    potentiostat.start_sequence.put(1, wait=True)
    error = _connected(_signal(f"{PREFIX}potentiostat:ERROR_RBV", string=True))
    assert "compliance" in error.get(use_monitor=False)
    assert potentiostat.running.get(use_monitor=False) == 0
    assert potentiostat.mode.get(use_monitor=False) == "open_circuit"


def test_run_protocol_charges_the_ioc_cell_and_records_its_readings(RE, potentiostat):
    capacity_ah = 0.5 * potentiostat.limits.max_current_a
    protocol = parse_protocol("CC charge to 4.2 V at 1C for 20 min; rest 10 min", capacity_ah=capacity_ah)
    documents = []
    RE(run_protocol(potentiostat, protocol, delay=ClockDelay(name="delay"), poll_s=0.05),
       lambda name, doc: documents.append((name, doc)))  # fmt: skip
    events = [doc for name, doc in documents if name == "event"]
    voltages = [doc["data"]["potentiostat_voltage"] for doc in events if "potentiostat_voltage" in doc["data"]]
    capacities = [doc["data"]["potentiostat_capacity"] for doc in events if "potentiostat_capacity" in doc["data"]]
    (stop,) = [doc for name, doc in documents if name == "stop"]
    assert stop["exit_status"] == "success"
    # 20 min at 1C is a third of the cell's capacity, in 0.33 s of wall time at 3600x
    assert max(capacities) == pytest.approx(capacity_ah * 1e3 / 3, rel=0.1)
    assert max(voltages) > min(voltages)
    assert potentiostat.mode.get() == "open_circuit"


def test_the_ioc_refuses_a_port_another_server_listens_on():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "streaming.app.cli", "sim-ioc", "--port", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert f"cannot serve Channel Access on 127.0.0.1:{port}" in done.stderr
