"""Compton kinematics and the EMF, against the paper's numbers and xraylib."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xraylib

from streaming.processing.compton import dpz_denergy, emf, emf_weights, energy_from_pz, pz_from_energy

RIGHT_ANGLE = math.pi / 2


def test_energies_at_the_papers_momenta():
    # DESIGN.md / the XCS-CT paper: pz = -5, -1, 0, +1, +5 a.u. <-> these E2 at 114.64 keV, 90°
    expected = [89.303, 92.755, 93.634, 94.519, 98.131]
    np.testing.assert_allclose(energy_from_pz(np.array([-5, -1, 0, 1, 5.0]), 114.64, RIGHT_ANGLE), expected, atol=1e-3)


def test_pz_zero_is_xraylibs_compton_peak():
    peak = xraylib.ComptonEnergy(114.64, RIGHT_ANGLE)
    assert pz_from_energy(np.array([peak]), 114.64, RIGHT_ANGLE)[0] == pytest.approx(
        0.0, abs=1e-5
    )  # constants differ in the 7th digit


@pytest.mark.parametrize("angle_deg", [30.0, 90.0, 150.0])
def test_energy_from_pz_inverts_pz_from_energy(angle_deg):
    pz = np.linspace(-30, 30, 121)
    angle = math.radians(angle_deg)
    np.testing.assert_allclose(pz_from_energy(energy_from_pz(pz, 114.64, angle), 114.64, angle), pz, atol=1e-9)


def test_jacobian_matches_finite_differences():
    energies = np.linspace(85, 102, 18)
    h = 1e-5
    numeric = (
        pz_from_energy(energies + h, 114.64, RIGHT_ANGLE) - pz_from_energy(energies - h, 114.64, RIGHT_ANGLE)
    ) / (2 * h)
    np.testing.assert_allclose(dpz_denergy(energies, 114.64, RIGHT_ANGLE), numeric, rtol=1e-7)


def test_low_momentum_window_is_176_ev_wide_and_bins_are_split_fractionally():
    width = (
        energy_from_pz(np.array([1.0]), 114.64, RIGHT_ANGLE)[0]
        - energy_from_pz(np.array([-1.0]), 114.64, RIGHT_ANGLE)[0]
    )
    assert width == pytest.approx(1.764, abs=0.01)
    # shifting the bin grid by a fraction of a bin leaves the EMF of a smooth spectrum alone
    spectrum = lambda e: np.exp(-0.5 * ((e - 93.6) / 2.5) ** 2)  # noqa: E731
    values = []
    for offset in (0.0, 0.05, 0.1, 0.15):
        edges = np.arange(60 + offset, 130, 0.2)
        centres = 0.5 * (edges[1:] + edges[:-1])
        values.append(float(emf(spectrum(centres) * 0.2, edges)))
    assert max(values) - min(values) < 2e-3 * np.mean(values)


def test_emf_sigma_matches_the_spread_of_poisson_repeats():
    edges = np.linspace(0, 200, 1001)
    centres = 0.5 * (edges[1:] + edges[:-1])
    expected = 50 * np.exp(-0.5 * ((centres - 93.6) / 3.0) ** 2)
    rng = np.random.default_rng(5)
    values, sigmas = emf(rng.poisson(expected, (400, expected.size)), edges, return_sigma=True)
    assert np.std(values) == pytest.approx(np.mean(sigmas), rel=0.15)


def test_bad_edges_are_refused():
    with pytest.raises(ValueError, match="increasing"):
        emf_weights(np.array([1.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="bins"):
        emf(np.ones(10), np.linspace(0, 200, 1001))
