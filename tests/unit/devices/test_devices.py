"""Simulated devices on their own: motion on the clock, limits, protocols, the potentiostat's
safety rules, and the EPICS classes' names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devices import (
    CurrentStep,
    CyclingProtocol,
    PotentiostatLimits,
    RestStep,
    SimAxis,
    SimPotentiostat,
    VoltageStep,
    parse_protocol,
)
from devices.epics import EpicsAxis, EpicsPotentiostat
from devices.motion import Trajectory
from simulators.battery import AAA_NMC532_GRAPHITE, EquivalentCircuitBattery
from simulators.clock import SimulatedClock
from streaming.errors import ConfigError, DeviceError, LimitError

CAPACITY_AH = AAA_NMC532_GRAPHITE.nominal_capacity_ah
PAPER_PROTOCOL = "CCCV charge to 4.2 V at C/20 until I < 5 %; rest 10 min; CC discharge to 2.75 V at C/2"


def potentiostat(clock: SimulatedClock, soc: float = 0.0, **kwargs) -> SimPotentiostat:
    battery = EquivalentCircuitBattery(AAA_NMC532_GRAPHITE, soc=soc)
    limits = kwargs.pop("limits", PotentiostatLimits(2.75, 4.2, 0.5))
    return SimPotentiostat(name="potentiostat", clock=clock, battery=battery, limits=limits, **kwargs)


def recorded_readings(device: SimPotentiostat) -> list[dict[str, float]]:
    readings: list[dict[str, float]] = []

    def record(**kwargs) -> None:
        reading = device.read()
        keys = ("voltage", "current", "mode", "capacity")
        readings.append({key: reading[f"potentiostat_{key}"]["value"] for key in keys})
        readings[-1]["time"] = reading["potentiostat_voltage"]["timestamp"]

    device.subscribe(record, run=False)
    return readings


# -- motion -------------------------------------------------------------------------------


def test_a_move_takes_the_trapezoidal_time_on_the_clock():
    clock = SimulatedClock(start=0.0)
    axis = SimAxis(name="x", clock=clock, limits=(-10, 10), velocity=2.0, max_velocity=5.0, acceleration_s=0.5)
    status = axis.set(6.0)
    assert status.done and status.success
    assert clock.time() == pytest.approx(6.0 / 2.0 + 0.5)
    assert axis.position == 6.0
    trajectory = axis.last_trajectory
    # constant speed between the ramps: 0.5 mm of ramp at each end
    assert trajectory.cruise_range() == pytest.approx((0.5, 5.5))
    assert trajectory.time_at(3.0) == pytest.approx(0.5 + (3.0 - 0.5) / 2.0)
    with pytest.raises(ValueError, match="constant-speed"):
        trajectory.time_at(0.2)


def test_targets_and_speeds_outside_the_limits_are_refused_before_moving():
    clock = SimulatedClock(start=0.0)
    axis = SimAxis(name="x", clock=clock, limits=(-10, 10), velocity=2.0, max_velocity=5.0)
    axis.set(1.0)
    before = (axis.position, clock.time(), axis.last_trajectory)
    for target in (10.5, -11.0, math.nan):
        with pytest.raises(LimitError, match="limits"):
            axis.set(target)
    axis.velocity.put(7.0)
    with pytest.raises(LimitError, match="velocity"):
        axis.set(2.0)
    assert (axis.position, clock.time(), axis.last_trajectory) == before


# -- protocols ----------------------------------------------------------------------------


def test_the_papers_protocol_reads_into_steps_with_currents_from_the_c_rate():
    protocol = parse_protocol(PAPER_PROTOCOL, capacity_ah=CAPACITY_AH)
    cc, cv, rest, discharge = protocol.steps
    assert isinstance(cc, CurrentStep) and cc.current_a == pytest.approx(CAPACITY_AH / 20) and cc.v_limit == 4.2
    assert isinstance(cv, VoltageStep) and cv.voltage_v == 4.2
    assert cv.cutoff_current_a == pytest.approx(0.05 * CAPACITY_AH / 20)
    assert isinstance(rest, RestStep) and rest.duration_s == 600
    assert isinstance(discharge, CurrentStep) and discharge.current_a == pytest.approx(-CAPACITY_AH / 2)
    assert discharge.v_limit == 2.75
    other = parse_protocol("CC charge to 4.1 V at 10 mA for 2 h; CV at 4.1 V until I < 1 mA; rest 30 s", capacity_ah=1)
    assert other.steps[0].current_a == pytest.approx(0.01) and other.steps[0].max_duration_s == 7200
    assert other.steps[1].cutoff_current_a == pytest.approx(1e-3) and other.steps[2].duration_s == 30


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("CC charge to 4.2 V at fast", "rate 'fast'"),
        ("CCCV charge to 4.2 V at C/20", "until I <"),
        ("hold 4.2 V", "cannot read 'hold 4.2 V'"),
        ("rest 10 years", "cannot read"),
        ("", "no steps"),
    ],
)
def test_protocol_text_errors_name_the_clause(text, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_protocol(text, capacity_ah=CAPACITY_AH)


def test_protocol_validation_names_the_step_outside_the_limits():
    limits = PotentiostatLimits(2.75, 4.2, 0.1)
    parse_protocol(PAPER_PROTOCOL, capacity_ah=0.1).validate(limits)
    with pytest.raises(LimitError, match=r"step 1: .*4.3 V"):
        parse_protocol("CC charge to 4.3 V at C/20", capacity_ah=0.1).validate(limits)
    with pytest.raises(LimitError, match=r"step 2: .*compliance"):
        parse_protocol("rest 1 min; CC discharge to 3 V at 2C", capacity_ah=0.1).validate(limits)
    with pytest.raises(ConfigError, match="v_min < v_max"):
        PotentiostatLimits(4.2, 2.75, 0.1)


# -- potentiostat -------------------------------------------------------------------------


def test_a_protocol_runs_on_the_clock_and_the_voltage_never_leaves_the_window():
    clock = SimulatedClock(start=0.0)
    device = potentiostat(clock, sample_interval_s=60.0)
    readings = recorded_readings(device)
    status = device.set(parse_protocol("CCCV charge to 4.2 V at C/2 until I < 5 %; rest 10 min; "
                                       "CC discharge to 2.75 V at C/2", capacity_ah=CAPACITY_AH))  # fmt: skip
    for _ in range(24 * 60):
        if status.done:
            break
        clock.advance(60.0)
    assert status.done and status.success
    voltages = np.array([r["voltage"] for r in readings])
    modes = [r["mode"] for r in readings]
    currents = np.array([r["current"] for r in readings])
    # charging never pushes the cell above 4.2 V, discharging never below 2.75 V (an empty
    # cell starts below 2.75 V on its own)
    assert voltages[currents > 0].max() <= 4.2 + 1e-9
    assert voltages[currents < 0].min() >= 2.75 - 1e-9
    # the steps in order: CC, CV, rest, CC, then open circuit
    seen = [m for i, m in enumerate(modes) if i == 0 or m != modes[i - 1]]
    assert seen == ["constant_current", "constant_voltage", "rest", "constant_current", "open_circuit"]
    assert voltages[modes.index("constant_voltage")] == pytest.approx(4.2)
    assert device.mode.get() == "open_circuit" and device.current.get() == 0.0
    # the capacity readback is the charge passed: coulomb counting of the sampled current
    times = np.array([r["time"] for r in readings])
    end_of_charge = modes.index("rest")
    counted_mah = np.sum(currents[1 : end_of_charge + 1] * np.diff(times[: end_of_charge + 1])) / 3.6
    assert readings[end_of_charge]["capacity"] == pytest.approx(counted_mah, rel=0.02)
    assert readings[end_of_charge]["capacity"] > 0.3 * CAPACITY_AH * 1e3


def test_out_of_limit_setpoints_are_refused_and_nothing_changes():
    clock = SimulatedClock(start=0.0)
    device = potentiostat(clock)
    state = device.battery.state
    for step in (
        CurrentStep(current_a=0.6, v_limit=4.2),  # beyond the 0.5 A compliance
        CurrentStep(current_a=0.1, v_limit=4.3),  # charge limit beyond 4.2 V
        VoltageStep(voltage_v=2.5, cutoff_current_a=0.01),
        CyclingProtocol((RestStep(60), CurrentStep(current_a=-1.0, v_limit=3.0))),
    ):
        with pytest.raises(LimitError):
            device.set(step)
    assert device.battery.state == state and clock.time() == 0.0
    assert device.mode.get() == "open_circuit" and device.current_setpoint.get() == 0.0


def test_stop_opens_the_circuit_mid_charge_and_resume_continues_the_protocol():
    clock = SimulatedClock(start=0.0)
    device = potentiostat(clock, soc=0.2)
    status = device.set(CurrentStep(current_a=0.1, v_limit=4.2))
    clock.advance(600.0)
    assert device.mode.get() == "constant_current" and device.current.get() == pytest.approx(0.1)
    with pytest.raises(DeviceError, match="running"):
        device.set(RestStep(10))
    device.stop(success=True)
    assert device.mode.get() == "open_circuit" and device.current.get() == 0.0
    soc = device.battery.state.soc
    clock.advance(600.0)
    assert device.battery.state.soc == soc  # no current flows at open circuit
    device.resume()
    assert device.mode.get() == "constant_current"
    while not status.done:
        clock.advance(600.0)
    assert status.success and device.voltage.get() <= 4.2 + 1e-9


def test_limits_cannot_reach_outside_the_cells_window():
    with pytest.raises(DeviceError, match="outside the cell"):
        potentiostat(SimulatedClock(), limits=PotentiostatLimits(2.0, 4.2, 0.5))


# -- EPICS counterparts -----------------------------------------------------------------------


def test_sim_and_epics_classes_share_the_names_plans_use():
    assert set(SimAxis.component_names) <= set(EpicsAxis.component_names)
    assert set(SimPotentiostat.component_names) <= set(EpicsPotentiostat.component_names)
    readbacks = {"voltage", "current", "capacity", "mode", "step", "step_time"}
    assert readbacks <= set(EpicsPotentiostat.component_names)


@pytest.mark.parametrize(
    ("start", "stop", "velocity", "accel_s"),
    [(0.0, 10.0, 2.0, 1.0), (5.0, 4.9, 2.0, 1.0), (0.0, -3.0, 2.0, 0.0), (-2.0, 6.0, 4.0, 0.5)],
)
def test_a_trajectory_moves_along_its_trapezoid(start, stop, velocity, accel_s):
    """The simulated IOC's readback follows ``position_at``: it must agree with the duration and
    the cruise timing the detectors use, and never outrun the speed."""
    move = Trajectory(100.0, start, stop, velocity, accel_s)
    times = 100.0 + np.linspace(-1.0, move.duration_s + 1.0, 2001)
    positions = np.array([move.position_at(t) for t in times])
    assert positions[0] == start and positions[-1] == pytest.approx(stop, abs=1e-12)
    speeds = np.abs(np.diff(positions)) / np.diff(times)
    assert speeds.max() <= velocity * (1 + 1e-9)
    assert np.all(np.diff(positions) * move.direction >= -1e-12)  # never back
    low, high = move.cruise_range()
    for position in np.linspace(low, high, 7) if low < high else []:
        assert move.position_at(move.time_at(position)) == pytest.approx(position, abs=1e-9)
