"""XCS-CT processing speed, side by side with a plain per-frame numpy/scipy reference, in one run.

- HEXITEC event chain frames/s at 1 % occupancy (≈ 64 photons in a frame; threshold,
  calibration, 4-connected events with two-pixel summing, histogram into the 80 x 80 x 1000
  cube) on one core, against the detector's 9118.87 Hz and against
  :func:`reference_process_frames`, the obvious per-frame numpy + ``scipy.ndimage.label``
  chain (also used by the tests to check the numba kernel event for event);
- EMF map latency: ``compton.emf`` over the whole 80 x 80 x 1000 cube (with and without its
  Poisson sigma), plus the cost of copying the cube out of the accumulator;
- XCT: one slice's astra FBP (coin cell, 88 columns, 360 and 3600 projections over 360°) and
  the reduction of the whole 64-row stack (flat/dark, -log, ring removal, FBP).

One core (numba, BLAS and astra threads limited to 1), medians of repeats. Results:
``benchmarks/results/xcs_processing.json``. Run: ``python -m benchmarks.benchmark_xcs_processing``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numba
import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

from benchmarks._machine import machine_description, median_seconds, write_results
from simulators.coin_cell import CoinCellPhantom
from simulators.hexitec import FRAME_RATE_HZ, HexitecSimulator
from simulators.xcs import sheet_column_atoms
from simulators.xct import XctScan
from streaming.processing.compton import emf
from streaming.processing.hexitec import (
    EventCounters,
    HexitecCalibration,
    HexitecConfig,
    SpectrumAccumulator,
    pedestal_from_darks,
)
from streaming.processing.rings import remove_rings
from streaming.processing.xct import absorbance, reconstruct

RESULTS = Path(__file__).parent / "results" / "xcs_processing.json"
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def reference_process_frames(
    frames: np.ndarray, calibration: HexitecCalibration, config: HexitecConfig, out_cube: np.ndarray
) -> EventCounters:
    """The event chain written the obvious way: each frame calibrated in full, thresholded,
    labelled by ``scipy.ndimage.label`` and histogrammed with ``np.add.at``."""
    counters = EventCounters()
    gradient, intercept = calibration.gradient_kev_per_adu, calibration.intercept_kev
    pedestal = calibration.pedestal_adu
    width = (config.energy_max_kev - config.energy_min_kev) / config.n_bins
    limit = config.max_event_pixels if config.charge_sharing == "sum" else 1
    for frame in frames:
        counters.frames += 1
        energy = gradient * (frame - pedestal) + intercept
        if config.threshold_kev is not None:
            hits = energy > config.threshold_kev
        else:
            hits = frame - pedestal > config.threshold_adu
        counters.hit_pixels += int(hits.sum())
        if config.charge_sharing == "off":
            rows, cols = np.nonzero(hits)
            sizes, totals = np.ones(rows.size), energy[hits]
        else:
            labels, n = ndimage.label(hits, _FOUR_CONNECTED)
            if n == 0:
                continue
            index = np.arange(1, n + 1)
            sizes = ndimage.sum_labels(hits, labels, index)
            totals = ndimage.sum_labels(energy, labels, index)
            peaks = np.array(ndimage.maximum_position(energy, labels, index)).reshape(-1, 2)
            keep = sizes <= limit
            counters.dropped += int((~keep).sum())
            rows, cols, sizes, totals = peaks[keep, 0], peaks[keep, 1], sizes[keep], totals[keep]
        counters.single += int((sizes == 1).sum())
        counters.merged += int((sizes > 1).sum())
        bins = np.floor((totals - config.energy_min_kev) / width)
        inside = (bins >= 0) & (bins < config.n_bins)
        counters.out_of_range += int((~inside).sum())
        np.add.at(out_cube, (rows[inside], cols[inside], bins[inside].astype(int)), 1)
    return counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict = {"benchmark": "xcs_processing", "machine": machine_description(), "cores_used": 1}
    numba.set_num_threads(1)
    with threadpool_limits(limits=1):
        phantom = CoinCellPhantom(n_xy=80, n_z=64, rng=np.random.default_rng(2))
        bottom, top = phantom.cell.layers_m["cathode"]
        atoms = sheet_column_atoms(phantom, 1.0, (bottom + top) / 2, 0.25e-3)
        simulator = HexitecSimulator(atoms, occupancy=0.01, rng=np.random.default_rng(1))
        calibration = HexitecCalibration(
            simulator.gradient_kev, simulator.intercept_kev, pedestal_from_darks(simulator.dark_frames(500))
        )
        batch = 5000
        frames = simulator.frames(batch)
        accumulator = SpectrumAccumulator(calibration)
        accumulator.add(frames[:10])  # compile (or load the cached kernel) outside the timing
        chain_fps = batch / median_seconds(lambda: accumulator.add(frames), args.repeats)
        reference_frames = frames[:500]
        cube = np.zeros((80, 80, 1000), np.int64)
        reference_fps = reference_frames.shape[0] / median_seconds(
            lambda: reference_process_frames(reference_frames, calibration, accumulator.config, cube), 3
        )
        for _ in range(20):  # a spectra cube of ~ 1e6 events, as after a couple of seconds
            accumulator.add(frames)
        spectra = accumulator.spectra
        edges = accumulator.energy_edges_kev
        copy_s = median_seconds(lambda: accumulator.spectra, args.repeats)
        emf_s = median_seconds(lambda: emf(spectra, edges), args.repeats)
        emf_sigma_s = median_seconds(lambda: emf(spectra, edges, return_sigma=True), args.repeats)

        scans = {n: XctScan(phantom, n_projections=n, rng=np.random.default_rng(3)) for n in (360, 3600)}
        slice_s = {}
        for n, scan in scans.items():
            sinogram = scan.line_integrals(0.5)[:, 20, :]
            theta_rad = np.radians(scan.angles_deg)
            slice_s[n] = median_seconds(lambda s=sinogram, t=theta_rad: reconstruct(s, t, n_pixels=80), args.repeats)
        scan = scans[360]
        projections, flats, darks = scan.projections(0.5), scan.flats(20), scan.darks(20)
        theta_rad = np.radians(scan.angles_deg)

        def reduce_stack() -> np.ndarray:
            sinograms = remove_rings(absorbance(projections, flats, darks), theta_rad)
            return reconstruct(sinograms, theta_rad, n_pixels=80, pixel_size_m=phantom.voxel_xy_m)

        stack_s = median_seconds(reduce_stack, 3)
    results.update(
        hexitec_event_chain={
            "frames_per_s": chain_fps,
            "per_frame_numpy_reference_frames_per_s": reference_fps,
            "ratio_to_reference": chain_fps / reference_fps,
            "ratio_to_detector_rate": chain_fps / FRAME_RATE_HZ,
            "occupancy": 0.01,
            "batch_frames": batch,
            "config": {"threshold_kev": 3.0, "charge_sharing": "sum", "max_event_pixels": 2},
        },
        emf_map={
            "pixels": [80, 80],
            "n_bins": int(edges.size - 1),
            "emf_ms": emf_s * 1e3,
            "emf_with_sigma_ms": emf_sigma_s * 1e3,
            "spectra_copy_ms": copy_s * 1e3,
        },
        xct={
            "fbp_slice_ms": {str(n): s * 1e3 for n, s in slice_s.items()},
            "slice_shape": [80, 80],
            "detector_columns": scan.n_cols,
            "stack_reduction_s": stack_s,
            "stack_shape": list(projections.shape),
        },
    )
    print(
        f"HEXITEC chain {chain_fps:8.0f} frames/s ({chain_fps / FRAME_RATE_HZ:.1f}x 9118.87 Hz; per-frame numpy "
        f"{reference_fps:.0f}/s, ratio {chain_fps / reference_fps:.0f}x)  EMF map {emf_s * 1e3:.0f} ms "
        f"({emf_sigma_s * 1e3:.0f} ms with sigma)  FBP slice {slice_s[360] * 1e3:.1f} ms (360 proj), "
        f"{slice_s[3600] * 1e3:.1f} ms (3600)  stack {stack_s:.2f} s"
    )
    write_results(args.out, results)


if __name__ == "__main__":
    main()
