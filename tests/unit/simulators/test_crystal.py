"""Powder diffraction from structures, checked against independent numbers: pyFAI's
calibrant d-spacing tables, textbook d-spacing formulas and extinction rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyFAI.calibrant import get_calibrant

from simulators.crystal import Phase, Site, powder_pattern, pseudo_voigt, reflections, wavelength_angstrom
from simulators.phases import AL_FCC, CU_FCC, FE_BCC, GRAPHITE, LIC6, nmc532

LAMBDA_ANGSTROM = 0.11979
TTH_MAX_DEG = 10.8


def _two_theta_max_for(d_min_angstrom: float) -> float:
    return math.degrees(2 * math.asin(LAMBDA_ANGSTROM / (2 * d_min_angstrom)))


def test_wavelength_of_the_papers_beam():
    assert wavelength_angstrom(103.5) == pytest.approx(0.11979, abs=2e-5)


def test_al_reflections_match_pyfai_calibrant_table():
    d_min = 0.8
    ours = reflections(AL_FCC, LAMBDA_ANGSTROM, _two_theta_max_for(d_min)).d_angstrom
    table = np.array([d for d in get_calibrant("Al").dSpacing if d >= d_min])
    np.testing.assert_allclose(ours, table[: len(ours)], rtol=2e-4)
    assert len(ours) == len(table)


def test_ceo2_fluorite_extinctions_match_pyfai_calibrant_table():
    a = 5.411651
    fluorite = Phase(
        name="CeO2",
        a_angstrom=a,
        b_angstrom=a,
        c_angstrom=a,
        sites=(
            Site({58: 1.0}, ((0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5))),
            Site({8: 1.0}, tuple((x + dx, y + dy, z + dz) for x, y, z in ((0.25, 0.25, 0.25), (0.75, 0.75, 0.75))
                                 for dx, dy, dz in ((0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)))),
        ),
    )  # fmt: skip
    d_min = 1.0
    ours = reflections(fluorite, LAMBDA_ANGSTROM, _two_theta_max_for(d_min)).d_angstrom
    table = np.array([d for d in get_calibrant("CeO2").dSpacing if d >= d_min])
    np.testing.assert_allclose(ours, table, rtol=2e-4)


@pytest.mark.parametrize(
    ("phase", "hkl", "d_expected"),
    [
        (FE_BCC, (1, 1, 0), 2.8665 / math.sqrt(2)),
        (FE_BCC, (2, 0, 0), 2.8665 / 2),
        (CU_FCC, (1, 1, 1), 3.6149 / math.sqrt(3)),
        (CU_FCC, (2, 2, 0), 3.6149 / math.sqrt(8)),
        (GRAPHITE, (0, 0, 2), 6.711 / 2),
        (LIC6, (0, 0, 1), 3.706),
    ],
)
def test_cubic_and_hexagonal_d_spacings(phase, hkl, d_expected):
    found = reflections(phase, LAMBDA_ANGSTROM, TTH_MAX_DEG)
    assert np.min(np.abs(found.d_angstrom - d_expected)) < 1e-5
    two_theta = math.degrees(2 * math.asin(LAMBDA_ANGSTROM / (2 * d_expected)))
    assert np.min(np.abs(found.two_theta_deg - two_theta)) < 1e-6


def test_nmc_reflections_follow_the_hexagonal_formula_and_r_centring():
    a, c = 2.859, 14.316
    found = reflections(nmc532(a, c), LAMBDA_ANGSTROM, TTH_MAX_DEG)

    def d_hex(hkl):
        h, k, ell = hkl
        return 1 / math.sqrt(4 / 3 * (h * h + h * k + k * k) / a**2 + ell * ell / c**2)

    for hkl in [(0, 0, 3), (1, 0, 1), (1, 0, 4), (1, 0, 5), (1, 1, 0)]:  # -h+k+l = 3n: allowed
        assert np.min(np.abs(found.d_angstrom - d_hex(hkl))) < 1e-5, hkl
    for hkl in [(0, 0, 1), (0, 0, 2), (1, 0, 0)]:  # forbidden by the R lattice
        assert np.min(np.abs(found.d_angstrom - d_hex(hkl))) > 1e-3, hkl


def test_bcc_and_fcc_extinctions():
    fe = reflections(FE_BCC, LAMBDA_ANGSTROM, TTH_MAX_DEG)
    assert np.min(np.abs(fe.d_angstrom - 2.8665)) > 1e-3  # (100) absent in bcc
    cu = reflections(CU_FCC, LAMBDA_ANGSTROM, TTH_MAX_DEG)
    assert np.min(np.abs(cu.d_angstrom - 3.6149 / math.sqrt(2))) > 1e-3  # (110) absent in fcc


def test_pseudo_voigt_has_unit_area_and_the_stated_width():
    x = np.linspace(-50, 50, 200_001)
    profile = pseudo_voigt(x, 0.0, 0.1, 0.0)
    assert np.trapezoid(profile, x) == pytest.approx(1.0, rel=1e-6)
    half = profile.max() / 2
    above = x[profile >= half]
    assert above[-1] - above[0] == pytest.approx(0.1, abs=1e-3)
    assert np.trapezoid(pseudo_voigt(x, 0.0, 0.1, 1.0), x) == pytest.approx(1.0, rel=1e-2)  # Lorentz tails


def test_pattern_integrates_to_the_reflection_intensities():
    tth = np.linspace(0.5, 10.0, 40_001)
    pattern = powder_pattern(CU_FCC, tth, LAMBDA_ANGSTROM, fwhm_deg=0.02, eta=0.0)
    inside = reflections(CU_FCC, LAMBDA_ANGSTROM, 9.9).intensity.sum()
    assert np.trapezoid(pattern, tth) == pytest.approx(inside, rel=1e-3)
