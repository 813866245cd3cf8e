"""Projections that never arrived, interpolated along the angle: checked on a phantom's
sinogram against the complete one and its reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import radon, resize

from streaming.processing.rings import covers_full_turn, fill_missing_projections
from streaming.processing.xct import reconstruct


@pytest.fixture(scope="module")
def full_turn():
    """A 64 x 64 phantom's sinogram over a whole turn, 360 angles, (n_angles, n_cols)."""
    image = resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)
    theta_deg = np.linspace(0.0, 360.0, 360, endpoint=False)
    return radon(image, theta=theta_deg, circle=True).T.astype(np.float32), np.radians(theta_deg)


def test_a_missing_projection_is_the_mean_of_its_neighbours_around_the_turn(full_turn):
    sinogram, _ = full_turn
    present = np.ones(len(sinogram), bool)
    present[[0, 100, 101, 359]] = False
    filled = fill_missing_projections(sinogram, present, full_turn=True)
    atol = 1e-6 * float(sinogram.max())
    np.testing.assert_allclose(filled[100], (2 * sinogram[99] + sinogram[102]) / 3, atol=atol)
    np.testing.assert_allclose(filled[0], (sinogram[358] + 2 * sinogram[1]) / 3, atol=atol)  # across 360° -> 0°
    np.testing.assert_array_equal(filled[present], sinogram[present])  # the rest untouched
    assert not np.shares_memory(filled, sinogram)


@pytest.mark.parametrize(("fraction", "tolerance"), [(0.01, 0.002), (0.10, 0.01), (0.50, 0.05)])
def test_a_scan_with_missing_projections_reconstructs_close_to_the_complete_one(full_turn, fraction, tolerance):
    """Interpolated and reconstructed, against the complete scan's slice: NRMSE within
    ``tolerance`` (a 50 % loss halves the angular sampling)."""
    sinogram, theta_rad = full_turn
    present = np.random.default_rng(3).random(len(sinogram)) >= fraction
    complete = reconstruct(sinogram, theta_rad)
    filled = reconstruct(fill_missing_projections(sinogram, present, full_turn=True), theta_rad)
    nrmse = np.sqrt(np.mean((filled - complete) ** 2)) / np.ptp(complete)
    assert nrmse < tolerance
    assert covers_full_turn(theta_rad) and not covers_full_turn(theta_rad[present])


def test_half_a_turn_takes_the_nearest_at_its_ends_and_too_few_raise():
    sinogram = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    present = np.zeros(10, bool)
    present[[3, 6]] = True
    filled = fill_missing_projections(sinogram, present, full_turn=False)
    np.testing.assert_allclose(filled[:, 0], [3, 3, 3, 3, 4, 5, 6, 6, 6, 6])
    present[6] = False
    with pytest.raises(ValueError, match="at least 2"):
        fill_missing_projections(sinogram, present, full_turn=True)
