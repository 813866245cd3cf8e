"""The PTFE flat field and the no-sample background, checked on the simulator's spectra."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.coin_cell import CoinCellPhantom
from simulators.hexitec import HexitecSimulator
from simulators.xcs import HEXITEC_ENERGY_EDGES_KEV, XcsModel, sheet_column_atoms
from streaming.processing.compton import emf
from streaming.processing.xcs_reference import correct_spectra, pixel_efficiency


@pytest.fixture(scope="module")
def cell_spectra() -> np.ndarray:
    phantom = CoinCellPhantom(n_z=16)
    simulator = HexitecSimulator(sheet_column_atoms(phantom, 0.0, 0.75e-3, 0.25e-3), XcsModel())
    return simulator.expected_spectra() * 1e5  # counts of 100 000 frames


def test_the_background_goes_and_the_efficiency_cancels_in_the_emf(cell_spectra, rng):
    edges = HEXITEC_ENERGY_EDGES_KEV
    efficiency = rng.uniform(0.7, 1.3, (80, 80))
    # the holder: a broad hump under the Compton band, recorded without the sample for half as long
    centres = 0.5 * (edges[1:] + edges[:-1])
    holder = np.exp(-0.5 * ((centres - 92.0) / 4.0) ** 2) * 2.0
    background_per_frame = np.broadcast_to(holder, cell_spectra.shape) * 1e-5
    measured = (cell_spectra + background_per_frame * 1e5) * efficiency[..., None]
    background = background_per_frame * 5e4 * efficiency[..., None]
    lit = cell_spectra.sum(axis=-1) > 1e3
    truth = emf(cell_spectra[lit], edges)
    assert np.abs(emf(measured[lit], edges) / truth - 1).max() > 0.01  # the holder biases it
    corrected = correct_spectra(measured, n_frames=100_000, background=background, background_frames=50_000,
                                efficiency=efficiency)  # fmt: skip
    np.testing.assert_allclose(emf(corrected[lit], edges), truth, rtol=1e-9)
    np.testing.assert_allclose(corrected[lit], cell_spectra[lit], rtol=1e-9)


def test_a_homogeneous_disk_gives_the_pixel_efficiency(rng):
    efficiency = rng.uniform(0.8, 1.2, (80, 80))
    ptfe = np.ones((80, 80, 1000)) * efficiency[..., None] * 3.0
    ptfe[0, 0] = 0  # a dead pixel
    found = pixel_efficiency(ptfe)
    assert np.isnan(found[0, 0])
    ratio = found / efficiency
    np.testing.assert_allclose(ratio[~np.isnan(found)], np.nanmedian(ratio), rtol=1e-12)
    with pytest.raises(ValueError, match="no counts"):
        pixel_efficiency(np.zeros((80, 80, 10)))
    with pytest.raises(ValueError, match="background_frames"):
        correct_spectra(ptfe, n_frames=10, background=ptfe)
