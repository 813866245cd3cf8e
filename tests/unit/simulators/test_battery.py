"""The equivalent-circuit battery: capacities, CV behaviour, limits and the exact update."""

from __future__ import annotations

import itertools
import math

import pytest

from simulators.battery import (
    AAA_NMC532_GRAPHITE,
    COIN_NMC811_LI,
    CellModel,
    EquivalentCircuitBattery,
    Termination,
)
from simulators.clock import SimulatedClock


@pytest.mark.parametrize("cell", [AAA_NMC532_GRAPHITE, COIN_NMC811_LI], ids=lambda c: c.name)
def test_slow_cc_discharge_delivers_the_capacity_within_one_percent(cell):
    battery = EquivalentCircuitBattery(cell, soc=1.0)
    result = battery.constant_current(-cell.nominal_capacity_ah / 20, 100 * 3600, v_limit=cell.ocv(0.0) + 0.3)
    assert result.termination is Termination.VOLTAGE_LIMIT
    assert -result.charge_ah == pytest.approx(cell.capacity_ah, rel=0.01)
    assert result.state.voltage_v == pytest.approx(cell.ocv(0.0) + 0.3, abs=1e-6)  # stopped exactly at the limit


def test_the_aaa_cell_delivers_what_the_paper_saw_and_less_at_c_over_2():
    cell = AAA_NMC532_GRAPHITE
    slow = EquivalentCircuitBattery(cell, soc=1.0).constant_current(-cell.nominal_capacity_ah / 20, 1e6, v_limit=2.75)
    fast = EquivalentCircuitBattery(cell, soc=1.0).constant_current(-cell.nominal_capacity_ah / 2, 1e6, v_limit=2.75)
    assert 0.300 <= -slow.charge_ah <= 0.350  # "~300-350 mAh delivered at C/20"
    assert -fast.charge_ah < -slow.charge_ah


def test_cccv_charge_holds_the_voltage_while_the_current_decays():
    cell = AAA_NMC532_GRAPHITE
    battery = EquivalentCircuitBattery(cell, soc=0.0)
    set_current = cell.nominal_capacity_ah / 20
    cc = battery.constant_current(set_current, 1e6, v_limit=4.2)
    assert cc.termination is Termination.VOLTAGE_LIMIT
    currents, voltages = [], []
    for _ in range(200):
        step = battery.constant_voltage(4.2, 60.0, current_cutoff_a=0.05 * set_current, dt_s=5.0)
        currents.append(step.state.current_a)
        voltages.append(step.state.voltage_v)
        if step.termination is Termination.CURRENT_CUTOFF:
            break
    assert step.termination is Termination.CURRENT_CUTOFF
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(currents))
    assert max(abs(v - 4.2) for v in voltages) < 1e-9
    assert currents[-1] < 0.05 * set_current


def test_limits_end_steps_with_a_flag_and_the_voltage_never_passes_them():
    cell = COIN_NMC811_LI
    battery = EquivalentCircuitBattery(cell, soc=0.95)
    result = battery.constant_current(cell.nominal_capacity_ah, 3600)  # 1 C charge into a nearly full cell
    assert result.termination is Termination.VOLTAGE_LIMIT
    assert result.state.voltage_v <= cell.v_max + 1e-9
    assert result.duration_s < 3600
    # already at the limit: the step does nothing and says so
    again = battery.constant_current(cell.nominal_capacity_ah, 3600)
    assert again.duration_s == 0 and again.termination is Termination.VOLTAGE_LIMIT
    with pytest.raises(ValueError, match="outside the cell's window"):
        battery.constant_voltage(cell.v_max + 0.1, 10)
    with pytest.raises(ValueError, match="outside the cell's window"):
        battery.constant_current(1e-3, 10, v_limit=cell.v_max + 0.5)
    with pytest.raises(ValueError, match="dt_s must be > 0"):
        battery.constant_voltage(4.0, 10, dt_s=0)
    with pytest.raises(ValueError, match="duration_s"):
        battery.rest(-5.0)


def test_rc_relaxation_is_the_exact_exponential():
    cell = AAA_NMC532_GRAPHITE
    battery = EquivalentCircuitBattery(cell, soc=0.5)
    battery.constant_current(0.3, 600)
    v_rc = battery.state.rc_voltage_v
    rested = battery.rest(cell.tau_s).state
    assert rested.rc_voltage_v == pytest.approx(v_rc * math.exp(-1), rel=1e-12)
    assert rested.voltage_v == pytest.approx(cell.ocv(rested.soc) + rested.rc_voltage_v, rel=1e-12)
    # one long step equals many short ones
    one, many = EquivalentCircuitBattery(cell, soc=0.3), EquivalentCircuitBattery(cell, soc=0.3)
    one.constant_current(0.1, 1000.0)
    for _ in range(100):
        many.constant_current(0.1, 10.0)
    assert one.state.voltage_v == pytest.approx(many.state.voltage_v, rel=1e-12)


def test_bad_models_and_states_are_refused():
    with pytest.raises(ValueError, match="ocv_v must rise"):
        CellModel(
            name="bad", nominal_capacity_ah=1, capacity_ah=1, ocv_soc=(0, 1), ocv_v=(4, 3),
            r0_ohm=0.1, r1_ohm=0.1, c1_f=1, v_min=2, v_max=5,
        )  # fmt: skip
    with pytest.raises(ValueError, match="soc must be within"):
        EquivalentCircuitBattery(AAA_NMC532_GRAPHITE, soc=1.2)


def test_simulated_clock_runs_hours_in_no_time():
    clock = SimulatedClock(start=100.0)
    clock.sleep(3600 * 10)
    assert clock.time() == 100.0 + 36000
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_pybamm_backend_offers_the_same_interface_and_physics():
    pybamm_battery = pytest.importorskip("simulators.pybamm_battery", reason="PyBaMM is an optional backend")
    battery = pybamm_battery.PybammBattery("SPM", soc=1.0)
    capacity = battery.nominal_capacity_ah
    first = battery.constant_current(-capacity / 5, 1800.0)
    assert first.termination is None and first.duration_s == pytest.approx(1800.0)
    assert first.charge_ah == pytest.approx(-capacity / 5 * 0.5, rel=1e-3)
    assert battery.state.soc == pytest.approx(0.9, abs=1e-3)
    empty = battery.constant_current(-capacity, 3 * 3600.0, v_limit=3.0)
    assert empty.termination is Termination.VOLTAGE_LIMIT
    assert empty.state.voltage_v == pytest.approx(3.0, abs=1e-3)
    rested = battery.rest(600.0).state
    assert rested.voltage_v > 3.0 and rested.current_a == pytest.approx(0.0, abs=1e-9)  # relaxation upwards
    charge = battery.constant_current(capacity / 2, 3 * 3600.0, v_limit=4.1)
    assert charge.termination is Termination.VOLTAGE_LIMIT
    hold = battery.constant_voltage(4.1, 3 * 3600.0, current_cutoff_a=capacity / 50)
    assert hold.termination is Termination.CURRENT_CUTOFF
    assert hold.state.current_a == pytest.approx(capacity / 50, rel=0.05)
