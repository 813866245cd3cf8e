"""XRD-CT simulator speed: frames/s for the ``small`` and ``paper`` presets, side by side with
pyFAI's own 1D-to-2D image generator (``AzimuthalIntegrator.calcfrom1d``) in one run.

For each preset: the set-up time (phantom, phases, astra projections), then per frame
- ``simulator``: :meth:`XrdctSimulation.frame` (pattern of the ray, 2D image, Poisson noise,
  zingers, gaps), the full cost of a Pilatus frame;
- ``simulator_noise_free``: :meth:`XrdctSimulation.expected_frame` alone;
- ``pyfai_calcfrom1d``: pyFAI building the noise-free image from the same 1D pattern with
  the same solid-angle and polarisation corrections (the reference tool);
all on one core, medians over repeated frames. Results: ``benchmarks/results/xrdct_simulator.json``.
Run: ``python -m benchmarks.benchmark_xrdct_simulator``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from benchmarks._machine import machine_description, median_seconds, write_results
from simulators.xrdct import XrdctSimulation

RESULTS = Path(__file__).parent / "results" / "xrdct_simulator.json"


def _median_rate(function, n: int) -> float:
    """Calls per second: ``function(i)`` for i in range(n), median of single calls."""
    calls = iter(range(n))
    return 1.0 / median_seconds(lambda: function(next(calls)), n)


def bench(preset: str, n_frames: int) -> dict:
    started = time.perf_counter()
    simulation = XrdctSimulation(preset, soc=0.5)
    setup_s = time.perf_counter() - started
    n_t = simulation.preset.n_translations
    angle = simulation.preset.n_angles // 3
    pattern = simulation.ray_pattern(angle, n_t // 2)
    integrator = simulation.integrator
    rates = {
        "simulator": _median_rate(lambda i: simulation.frame(angle, i % n_t), n_frames),
        "simulator_noise_free": _median_rate(lambda i: simulation.expected_frame(pattern), n_frames),
        "pyfai_calcfrom1d": _median_rate(
            lambda i: integrator.calcfrom1d(
                simulation.radial_deg,
                pattern,
                mask=simulation.mask,
                dim1_unit="2th_deg",
                correctSolidAngle=True,
                polarization_factor=0.99,
            ),
            n_frames,
        ),
    }
    return {
        "detector_shape": list(simulation.detector.shape),
        "scan_shape": [simulation.preset.n_angles, n_t],
        "setup_s": setup_s,
        "frames_per_s": rates,
        "noise_free_over_pyfai": rates["simulator_noise_free"] / rates["pyfai_calcfrom1d"],
        "n_frames_timed": n_frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = {"benchmark": "xrdct_simulator", "machine": machine_description(), "cores_used": 1, "presets": {}}
    with threadpool_limits(limits=1):
        for preset, n_frames in (("small", 200), ("paper", 15)):
            results["presets"][preset] = bench(preset, n_frames)
            figures = results["presets"][preset]
            fps = figures["frames_per_s"]
            print(
                f"{preset:6s} setup {figures['setup_s']:5.1f} s  frames {fps['simulator']:7.1f}/s  "
                f"noise-free {fps['simulator_noise_free']:7.1f}/s  pyFAI calcfrom1d {fps['pyfai_calcfrom1d']:7.1f}/s  "
                f"ratio {figures['noise_free_over_pyfai']:.1f}x"
            )
    write_results(args.out, results)


if __name__ == "__main__":
    main()
