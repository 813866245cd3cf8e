"""Sinogram building (placement by index, line completion, monitor, air), centre of
rotation on the simulator, and incremental filtered back-projection against astra-toolbox."""

from __future__ import annotations

import astra
import numpy as np
import pytest
from scipy import ndimage

from simulators.xrdct import XrdctSimulation
from streaming.processing.fbp import FBP_FILTERS, IncrementalFBP, reconstruct
from streaming.processing.sinogram import (
    SinogramBuilder,
    estimate_center_of_rotation,
    interpolate_missing,
    subtract_air,
)


@pytest.fixture(scope="module")
def simulation() -> XrdctSimulation:
    return XrdctSimulation("tiny", soc=0.5, seed=2)


def nrmse(image: np.ndarray, reference: np.ndarray) -> float:
    """Root-mean-square error over the reference's range."""
    return float(np.sqrt(np.mean((image - reference) ** 2)) / (reference.max() - reference.min()))


def astra_fbp(sinogram_2d: np.ndarray, angles_deg: np.ndarray, center_px: float, filter_name: str) -> np.ndarray:
    """astra's CPU FBP (``parallel`` geometry, ``linear`` projector) with the rotation axis
    moved to the detector centre by shifting the sinogram (whole pixels in these tests)."""
    n = sinogram_2d.shape[1]
    shift = (n - 1) / 2 - center_px
    centred = ndimage.shift(sinogram_2d, (0, shift), order=1, mode="constant")
    volume = astra.create_vol_geom(n, n)
    geometry = astra.create_proj_geom("parallel", 1.0, n, np.radians(angles_deg))
    projector = astra.create_projector("linear", geometry, volume)
    sinogram_id = astra.data2d.create("-sino", geometry, centred.astype(np.float32))
    volume_id = astra.data2d.create("-vol", volume, 0.0)
    config = astra.astra_dict("FBP")
    config.update(ProjectorId=projector, ProjectionDataId=sinogram_id, ReconstructionDataId=volume_id)
    config["FilterType"] = filter_name
    algorithm = astra.algorithm.create(config)
    try:
        astra.algorithm.run(algorithm)
        return astra.data2d.get(volume_id)
    finally:
        astra.algorithm.delete(algorithm)
        astra.data2d.delete([sinogram_id, volume_id])
        astra.projector.delete(projector)


# -- sinogram builder ---------------------------------------------------------------------------


def test_placement_does_not_depend_on_arrival_order(simulation):
    n_angles, n_translations = 6, simulation.preset.n_translations
    truth = simulation.sinogram(slice(0, n_angles))
    positions = [(a, t) for a in range(n_angles) for t in range(n_translations)]
    zigzag = [(a, t if a % 2 == 0 else n_translations - 1 - t) for a, t in positions]
    shuffled = [positions[i] for i in np.random.default_rng(0).permutation(len(positions))]
    results = []
    for order in (zigzag, shuffled):
        builder = SinogramBuilder(n_angles, n_translations, truth.shape[2])
        completed = []
        for a, t in order:
            completed += builder.add(a, t, truth[a, t])
        assert sorted(completed) == list(range(n_angles)) and builder.complete
        results.append(builder.sinogram())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], truth, rtol=1e-6)


def test_lines_complete_once_and_call_back():
    seen = []
    builder = SinogramBuilder(3, 4, 2, on_line_complete=seen.append)
    for t in (3, 2, 1):
        assert builder.add(1, t, np.ones(2)) == []
    assert not builder.line_complete(1)
    assert builder.add(1, 0, np.ones(2)) == [1]
    assert builder.line_complete(1) and seen == [1]
    assert builder.add(1, 2, np.full(2, 5.0)) == []  # a repeat replaces, never re-completes
    assert builder.n_replaced == 1 and seen == [1]
    np.testing.assert_array_equal(builder.line(1)[2], [5.0, 5.0])
    np.testing.assert_array_equal(builder.completed_lines, [1])
    assert builder.n_filled == 4 and builder.filled.sum() == 4
    live = builder.sinogram()
    live[:] = -1  # a copy: the builder is untouched
    assert builder.sinogram().max() == 5.0
    builder.reset()
    assert builder.n_filled == 0 and not builder.line_complete(1)


def test_monitor_normalisation_and_bad_input():
    builder = SinogramBuilder(2, 3, 4)
    builder.add(0, 0, np.full(4, 8.0), monitor=2.0)
    np.testing.assert_array_equal(builder.line(0)[0], np.full(4, 4.0))
    with pytest.raises(ValueError, match="monitor"):
        builder.add(0, 1, np.ones(4), monitor=0.0)
    with pytest.raises(ValueError, match="outside"):
        builder.add(2, 0, np.ones(4))
    with pytest.raises(ValueError, match="shape"):
        builder.add(0, 0, np.ones(5))
    with pytest.raises(ValueError, match="not complete"):
        builder.air_corrected_line(0)


def test_air_scatter_is_removed_from_the_edges(simulation):
    truth = simulation.sinogram(slice(0, 4))
    with_air = truth + simulation.air_pattern
    corrected = subtract_air(with_air, 1)
    # the cell does not reach the outermost translations: air alone is there
    expected = truth - truth[:, [0, -1]].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(corrected, expected, atol=1e-6 * truth.max())
    assert np.abs(corrected[:, [0, -1]]).max() < 0.05 * np.abs(with_air[:, [0, -1]]).max()


def test_missing_patterns_are_interpolated_instead_of_streaking(simulation):
    """Patterns lost on the way (scattered ones, a line's end, a whole line) back-project as
    streaks when left at 0; interpolated from their neighbours they barely show."""
    sinogram = simulation.sinogram()
    channel = int(np.argmax(sinogram.sum(axis=(0, 1))))
    filled = np.ones(sinogram.shape[:2], dtype=bool)
    rng = np.random.default_rng(4)
    filled[rng.integers(0, filled.shape[0], 20), rng.integers(0, filled.shape[1], 20)] = False
    filled[3, -3:] = False  # a line's end
    filled[17] = False  # a whole line
    filled[:, 40] = False  # a translation no line holds
    lossy = np.where(filled[..., None], sinogram, 0.0)
    filled_in = interpolate_missing(lossy, filled)
    np.testing.assert_array_equal(filled_in[filled], sinogram[filled])
    # a missing pattern between two filled lines is their mean at its translation
    a, t = np.argwhere(~filled[1:-1] & filled[:-2] & filled[2:])[0] + (1, 0)
    np.testing.assert_allclose(filled_in[a, t], (sinogram[a - 1, t] + sinogram[a + 1, t]) / 2, rtol=1e-6)

    def image(values):
        return reconstruct(values[..., channel], simulation.angles_deg, center_px=simulation.center_of_rotation_px)

    complete = image(sinogram)
    assert nrmse(image(filled_in), complete) < 0.1 * nrmse(image(lossy), complete)
    assert nrmse(image(filled_in), complete) < 0.005
    np.testing.assert_array_equal(interpolate_missing(sinogram, np.ones_like(filled)), sinogram)
    with pytest.raises(ValueError, match="filled must have shape"):
        interpolate_missing(sinogram, filled[:, :-1])


def test_center_of_rotation_within_half_a_pixel(simulation):
    with_air = simulation.sinogram() + simulation.air_pattern
    builder = SinogramBuilder(*with_air.shape, angles_deg=simulation.angles_deg, air_edge_px=1)
    for a in range(with_air.shape[0]):
        for t in range(with_air.shape[1]):
            builder.add(a, t, with_air[a, t])
    truth = simulation.center_of_rotation_px
    assert abs(builder.estimate_center_px() - truth) < 0.5
    assert abs(estimate_center_of_rotation(simulation.sinogram(), simulation.angles_deg) - truth) < 0.5


def test_center_of_rotation_from_integrated_frames(simulation):
    """A few lines of real frames (Poisson noise, zingers, air) through the trimmed mean."""
    from streaming.processing.integration import AzimuthalReducer, IntegrationConfig

    reducer = AzimuthalReducer.from_integrator(
        simulation.integrator, None, simulation.mask, IntegrationConfig(n_radial=100)
    )
    n_t = simulation.preset.n_translations
    angle_indices = np.arange(0, simulation.preset.n_angles, 6)
    builder = SinogramBuilder(
        angle_indices.size, n_t, 100, angles_deg=simulation.angles_deg[angle_indices], air_edge_px=1
    )
    for row, a in enumerate(angle_indices):
        for t in range(n_t):
            builder.add(row, t, reducer.integrate(simulation.frame(int(a), t)))
    assert abs(builder.estimate_center_px() - simulation.center_of_rotation_px) < 0.5


# -- filtered back-projection -------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_pixel_offset() -> XrdctSimulation:
    """A scan whose axis sits a whole pixel off centre, so astra's input needs no interpolation."""
    return XrdctSimulation("tiny", soc=0.5, seed=2, center_offset_px=1.0)


@pytest.mark.parametrize("filter_name", ["ram-lak", "shepp-logan"])
def test_batch_fbp_matches_astra(whole_pixel_offset, filter_name):
    simulation = whole_pixel_offset
    channels = np.arange(0, simulation.preset.n_radial, 25)
    sinogram = simulation.sinogram()[..., channels].astype(np.float32)
    ours = reconstruct(
        sinogram, simulation.angles_deg, center_px=simulation.center_of_rotation_px, filter_name=filter_name
    )
    reference = np.stack(
        [
            astra_fbp(sinogram[..., k], simulation.angles_deg, simulation.center_of_rotation_px, filter_name)
            for k in range(channels.size)
        ],
        axis=-1,
    )
    assert ours.shape == reference.shape == (64, 64, channels.size)
    assert nrmse(ours, reference) <= 0.01


@pytest.mark.parametrize("filter_name", FBP_FILTERS[2:])
def test_windowed_filters_stay_close_to_astra(whole_pixel_offset, filter_name):
    """Cosine, Hamming and Hann windows: within 2 % of astra (see the fbp module notes)."""
    simulation = whole_pixel_offset
    channels = np.arange(0, simulation.preset.n_radial, 25)
    sinogram = simulation.sinogram()[..., channels].astype(np.float32)
    ours = reconstruct(
        sinogram, simulation.angles_deg, center_px=simulation.center_of_rotation_px, filter_name=filter_name
    )
    reference = np.stack(
        [
            astra_fbp(sinogram[..., k], simulation.angles_deg, simulation.center_of_rotation_px, filter_name)
            for k in range(channels.size)
        ],
        axis=-1,
    )
    assert nrmse(ours, reference) <= 0.02


def test_incremental_fbp_equals_batch_whatever_the_line_order(simulation):
    channels = np.array([10, 120, 250, 399])
    sinogram = simulation.sinogram().astype(np.float32)
    centre = estimate_center_of_rotation(sinogram, simulation.angles_deg)
    batch = reconstruct(sinogram, simulation.angles_deg, center_px=centre, channels=channels)
    fbp = IncrementalFBP(sinogram.shape[1], simulation.angles_deg, center_px=centre, channels=channels)
    order = np.random.default_rng(1).permutation(sinogram.shape[0])
    for count, a in enumerate(order, start=1):
        fbp.add_line(int(a), sinogram[a])
        assert fbp.n_added == count
        if count == sinogram.shape[0] // 2:
            partial = fbp.image()
            assert not fbp.complete and np.abs(partial).max() > 0
    assert fbp.complete
    np.testing.assert_allclose(fbp.image(), batch, rtol=1e-4, atol=1e-5 * np.abs(batch).max())
    with pytest.raises(ValueError, match="already added"):
        fbp.add_line(0, sinogram[0])


def test_blocks_of_channels_and_a_live_order_give_the_same_image_bit_for_bit(simulation):
    """What the Dask reduction relies on: each channel reconstructed on its own (a block of
    channels is those channels of the whole), and ``line_order`` sums as a live image did."""
    sinogram = simulation.sinogram().astype(np.float32)[..., 100:140]
    centre = estimate_center_of_rotation(sinogram, simulation.angles_deg)
    whole = reconstruct(sinogram, simulation.angles_deg, center_px=centre)
    blocks = [reconstruct(np.ascontiguousarray(sinogram[..., block]), simulation.angles_deg, center_px=centre)
              for block in (slice(0, 7), slice(7, 8), slice(8, 40))]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(blocks, axis=2), whole)
    order = np.random.default_rng(2).permutation(sinogram.shape[0])
    live = IncrementalFBP(sinogram.shape[1], simulation.angles_deg, center_px=centre)
    for a in order:
        live.add_line(int(a), sinogram[a])
    in_order = reconstruct(sinogram, simulation.angles_deg, center_px=centre, line_order=order)
    np.testing.assert_array_equal(in_order, live.image())
    assert not np.array_equal(in_order, whole)  # the order is what made them equal
    with pytest.raises(ValueError, match="holds 3 of"):
        reconstruct(sinogram, simulation.angles_deg, center_px=centre, line_order=order[:3])


def test_reconstruction_recovers_the_phantom(simulation):
    """FBP of the noise-free sinogram looks like the truth map (same orientation as the
    simulator's astra projector)."""
    sinogram = simulation.sinogram()
    channel = int(np.argmax(sinogram.sum(axis=(0, 1))))
    image = reconstruct(sinogram[..., channel], simulation.angles_deg, center_px=simulation.center_of_rotation_px)[
        ..., 0
    ]
    truth = sum(fraction * pattern[channel] for _, fraction, pattern in simulation._basis())
    assert np.corrcoef(image.ravel(), truth.ravel())[0, 1] > 0.9


def test_fbp_refuses_bad_input():
    fbp = IncrementalFBP(8, np.linspace(0, 180, 4, endpoint=False), center_px=3.5)
    with pytest.raises(RuntimeError, match="no line"):
        fbp.image()
    with pytest.raises(ValueError, match="shape"):
        fbp.add_line(0, np.zeros((7, 2)))
    with pytest.raises(ValueError, match="angle_index"):
        fbp.add_line(4, np.zeros((8, 2)))
    with pytest.raises(ValueError, match="filter_name"):
        IncrementalFBP(8, np.zeros(3), center_px=3.5, filter_name="box")
