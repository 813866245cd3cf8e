"""XCS-CT simulators' speed, side by side with a plain per-frame numpy reference, in one run.

- HEXITEC frames/s (1 % occupancy, full physics: spectra, escape, charge sharing, gain and
  offset), generated in batches of 1000 frames, against the detector's 9118.87 Hz and against
  a straightforward per-frame numpy generator (Gaussian noise drawn for every pixel of
  every frame, photons placed one frame at a time);
- XCT projections/s of the tiny coin cell (80 x 80 x 64 voxels, astra, slice by slice);
- battery model steps/s (1 s constant-current steps with limit checks).

One core, medians of repeats. Results: ``benchmarks/results/xcs_simulators.json``.
Run: ``python -m benchmarks.benchmark_xcs_simulators``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks._machine import machine_description, median_seconds, write_results
from simulators.battery import AAA_NMC532_GRAPHITE, EquivalentCircuitBattery
from simulators.coin_cell import CoinCellPhantom
from simulators.hexitec import FRAME_RATE_HZ, HexitecSimulator
from simulators.xcs import sheet_column_atoms
from simulators.xct import XctScan

RESULTS = Path(__file__).parent / "results" / "xcs_simulators.json"


def per_frame_numpy_reference(simulator: HexitecSimulator, n: int, rng: np.random.Generator) -> np.ndarray:
    """The obvious generator: every frame on its own, fresh noise for every pixel."""
    sigma_adu = simulator.model.resolution_fwhm_kev / (2 * math.sqrt(2 * math.log(2))) / simulator.gradient_kev
    cdf = simulator._rate_cdf
    out = np.empty((n, 80, 80), np.uint16)
    for i in range(n):
        frame = simulator.pedestal_adu + rng.standard_normal((80, 80)) * sigma_adu
        picks = np.searchsorted(cdf, rng.random(rng.poisson(simulator.occupancy * 6400)))
        pixels = picks // simulator._n_components
        energies = rng.normal(93.6, 2.0, pixels.size)
        np.add.at(frame.reshape(-1), pixels, energies / simulator.gradient_kev.reshape(-1)[pixels])
        out[i] = np.clip(np.rint(frame), 0, 65535)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict = {"benchmark": "xcs_simulators", "machine": machine_description(), "cores_used": 1}
    with threadpool_limits(limits=1):
        phantom = CoinCellPhantom(n_xy=80, n_z=64)
        atoms = sheet_column_atoms(phantom, 1.0, 0.75e-3, 0.25e-3)
        simulator = HexitecSimulator(atoms, occupancy=0.01, rng=np.random.default_rng(1))
        batch = 1000
        hexitec_fps = batch / median_seconds(lambda: simulator.frames(batch), 7)
        reference_fps = 200 / median_seconds(
            lambda: per_frame_numpy_reference(simulator, 200, np.random.default_rng(2)), 5
        )
        scan = XctScan(phantom, n_projections=360)
        xct_pps = scan.n_projections / median_seconds(lambda: scan.projections(0.5), 3)
        battery = EquivalentCircuitBattery(AAA_NMC532_GRAPHITE, soc=0.5)
        steps = 20_000
        battery_sps = steps / median_seconds(lambda: [battery.constant_current(1e-3, 1.0) for _ in range(steps)], 3)
    results.update(
        hexitec={
            "frames_per_s": hexitec_fps,
            "per_frame_numpy_reference_frames_per_s": reference_fps,
            "ratio_to_reference": hexitec_fps / reference_fps,
            "ratio_to_detector_rate": hexitec_fps / FRAME_RATE_HZ,
            "occupancy": 0.01,
            "batch_frames": batch,
        },
        xct={"projections_per_s": xct_pps, "projection_shape": [scan.n_rows, scan.n_cols]},
        battery={"steps_per_s": battery_sps, "step_s": 1.0},
    )
    print(
        f"HEXITEC {hexitec_fps:8.0f} frames/s ({hexitec_fps / FRAME_RATE_HZ:.1f}x 9118.87 Hz; per-frame numpy "
        f"{reference_fps:.0f}/s, ratio {hexitec_fps / reference_fps:.1f}x)  XCT {xct_pps:.0f} projections/s  "
        f"battery {battery_sps:.0f} steps/s"
    )
    write_results(args.out, results)


if __name__ == "__main__":
    main()
