"""The simulated cell's phases as map references, and how maps are compared with its truth
(shared by test_maps.py and test_xrdct_analysis.py)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from simulators.references import aaa_cell_maps_config
from simulators.xrdct import XrdctSimulation
from streaming.processing.maps import MapsConfig

#: Phases the decomposition can tell apart at the tiny preset's resolution. The separator
#: (one weak broad line) and the inactive NMC (a lattice 0.4 % from the active one's) are
#: fitted but not held to the truth.
RESOLVED_PHASES = ("Fe", "Cu", "Al", "graphite", "LiC30", "NMC532")


def maps_config(simulation: XrdctSimulation) -> MapsConfig:
    """References from the simulator's phase models (what a user takes from a database)
    at the simulation's line width, the NMC (003) line for c, an intensity window on it."""
    return aaa_cell_maps_config(simulation.preset.fwhm_deg)


def inside_cell(simulation: XrdctSimulation) -> np.ndarray:
    """Pixels within the cell's outer diameter, (n, n)."""
    n = simulation.preset.n_translations
    offsets = np.arange(n) - (n - 1) / 2
    radius_m = np.hypot(*np.meshgrid(offsets, offsets)) * simulation.preset.translation_step_m
    return radius_m < simulation.cell.diameter_m / 2


def phase_correlations(weights: dict[str, np.ndarray], simulation: XrdctSimulation) -> dict[str, float]:
    """Pearson r of each resolved phase's map against the truth inside the cell, both
    smoothed by a 1-pixel Gaussian: a 48-angle scan of 64 translations cannot resolve the
    pixel-to-pixel moiré of the 0.3 mm jelly-roll pitch on 0.17 mm pixels, so the
    comparison is made at the resolution the scan has."""
    cell = inside_cell(simulation)
    result = {}
    for name in RESOLVED_PHASES:
        ours = ndimage.gaussian_filter(np.nan_to_num(weights[name]), 1.0)
        truth = ndimage.gaussian_filter(simulation.state.fractions[name], 1.0)
        result[name] = float(np.corrcoef(ours[cell], truth[cell])[0, 1])
    return result


def cathode_lattice_errors(c_map: np.ndarray, simulation: XrdctSimulation) -> tuple[np.ndarray, np.ndarray]:
    """|c - truth| in Å over the cathode (active NMC at least half its largest fraction):
    all of it, and the part where the inactive NMC is under 5 % of the NMC (its (003) line
    lies 0.006-0.025° from the active one's, inside the peak width, and pulls a one-peak fit)."""
    fractions = simulation.state.fractions
    cathode = fractions["NMC532"] >= 0.5 * fractions["NMC532"].max()
    secondary_share = fractions["NMC532-secondary"] / np.maximum(
        fractions["NMC532"] + fractions["NMC532-secondary"], 1e-9
    )
    errors = np.abs(c_map - simulation.state.nmc_c_angstrom)
    return errors[cathode], errors[cathode & (secondary_share < 0.05)]
