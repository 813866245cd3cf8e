"""The battery model's state of charge drives both cell phantoms: maps change with capacity."""

from __future__ import annotations

import itertools

import numpy as np

from simulators.battery import AAA_NMC532_GRAPHITE, COIN_NMC811_LI, EquivalentCircuitBattery
from simulators.coin_cell import CoinCellPhantom
from simulators.hexitec import HexitecSimulator
from simulators.xcs import HEXITEC_ENERGY_EDGES_KEV, sheet_column_atoms
from simulators.xrdct import XrdctSimulation
from streaming.processing.compton import emf


def test_discharging_the_aaa_cell_delithiates_the_anode_maps():
    cell = AAA_NMC532_GRAPHITE
    battery = EquivalentCircuitBattery(cell, soc=1.0)
    simulation = XrdctSimulation("tiny", soc=1.0)
    anode = simulation._materials["anode"] > 0.3
    li_per_c6, capacity = [], []
    stage_x = {"graphite": 0.0, "LiC30": 0.2, "LiC12": 0.5, "LiC6": 1.0}
    for _ in range(4):
        battery.constant_current(-cell.nominal_capacity_ah / 2, 1200.0, v_limit=2.75)
        state = simulation.cell_state(battery.state.soc)
        lithium = sum(x * state.fractions[phase][anode].sum() for phase, x in stage_x.items())
        li_per_c6.append(lithium / sum(state.fractions[phase][anode].sum() for phase in stage_x))
        capacity.append(-battery.state.charge_ah)
    assert all(b < a for a, b in itertools.pairwise(li_per_c6))
    assert all(b > a for a, b in itertools.pairwise(capacity))
    later = simulation.with_soc(battery.state.soc)
    assert later.soc == battery.state.soc and not np.array_equal(
        later.ray_pattern(0, 32), simulation.ray_pattern(0, 32)
    )


def test_discharging_the_coin_cell_raises_the_cathode_emf():
    cell = COIN_NMC811_LI
    battery = EquivalentCircuitBattery(cell, soc=1.0)
    phantom = CoinCellPhantom(n_xy=80, n_z=64, rng=np.random.default_rng(0))
    bottom, top = phantom.cell.layers_m["cathode"]
    values = []
    for _ in range(3):
        atoms = sheet_column_atoms(phantom, battery.state.soc, (bottom + top) / 2, 0.25e-3)
        expected = HexitecSimulator(atoms, rng=np.random.default_rng(1)).expected_spectra()
        cathode = phantom.cathode_mask[int((bottom + top) / 2 / phantom.voxel_z_m)]
        values.append(float(emf(expected[cathode].sum(axis=0), HEXITEC_ENERGY_EDGES_KEV)))
        battery.constant_current(-cell.nominal_capacity_ah / 10, 3 * 3600.0, v_limit=3.0)
    assert values[0] < values[1] < values[2]
