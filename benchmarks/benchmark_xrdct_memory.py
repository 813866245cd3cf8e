"""Peak memory of the live XRD-CT analysis at the paper's size, and that it does not grow
with the run's length.

The builder (:class:`~streaming.analysis.xrdct.XrdctAnalysis`) of an ``operando_xrdct``
series at the ``paper`` preset (549 translations x 400 angles, 2000 radial bins, the full
Pilatus 2M geometry) is fed the 1D patterns of two complete scans, as integration workers
send them (stream ``pilatus.integrated``: the builder never sees a raw frame, and a raw
frame is never held). Each scan is reconstructed (every line back-projected live), mapped
and written when its last pattern lands. The resident set size is sampled every 50 ms:
its peak during each scan, against what one scan's sinogram and volume take (float32) and
what the scan's raw frames would (int32, 1679 x 1475). The peak of scan 2 equal to scan
1's is the "memory does not grow with run length" check.

Patterns are synthetic (a smooth random pattern per voxel row); the work per pattern is
the analysis' own. Results: ``benchmarks/results/xrdct_memory.json``.
Run: ``python -m benchmarks.benchmark_xrdct_memory [--scans N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from benchmarks._machine import machine_description, write_results
from simulators.references import aaa_cell_maps_config
from simulators.xrdct_presets import PRESETS, WAVELENGTH_ANGSTROM, pilatus_detector
from streaming.analysis.xrdct import XrdctAnalysis, XrdctAnalysisConfig
from streaming.processing.integration import IntegrationConfig
from streaming.wire.protocol import Frame, FrameHeader

RESULTS = Path(__file__).parent / "results" / "xrdct_memory.json"
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """The process' resident set size, sampled in a thread; ``peak()`` since the last ``reset()``."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    @staticmethod
    def rss_bytes() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._peak = max(self._peak, self.rss_bytes())

    def reset(self) -> None:
        self._peak = self.rss_bytes()

    def peak(self) -> int:
        return max(self._peak, self.rss_bytes())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def paper_start_document(n_scans: int) -> dict:
    preset = PRESETS["paper"]
    detector = pilatus_detector(preset.detector_binning)
    rows, cols = detector.shape
    integrator = AzimuthalIntegrator(dist=1.0, poni1=0.52 * rows * detector.pixel1, poni2=0.47 * cols * detector.pixel2,
                                     rot1=0.002, rot2=-0.001, detector=detector,
                                     wavelength=WAVELENGTH_ANGSTROM * 1e-10)  # fmt: skip
    span_mm = preset.n_translations * preset.translation_step_m * 1e3
    return {
        "uid": "benchmark-xrdct-memory", "time": time.time(), "plan_name": "operando_xrdct", "scan_id": 1,
        "detectors": ["pilatus"], "shape": [preset.n_angles, preset.n_translations],
        "extents": [[0.0, 180.0], [-span_mm / 2, span_mm / 2]], "geometry": integrator.get_config(),
        "num_points": n_scans * preset.n_angles * preset.n_translations,
    }  # fmt: skip


def run(n_scans: int) -> dict:
    preset = PRESETS["paper"]
    n_angles, n_translations, n_radial = preset.n_angles, preset.n_translations, preset.n_radial
    sampler = RssSampler()
    baseline = sampler.rss_bytes()
    with tempfile.TemporaryDirectory() as folder:
        config = XrdctAnalysisConfig(out_dir=Path(folder), integration=IntegrationConfig(n_radial=n_radial),
                                     maps=aaa_cell_maps_config(preset="paper"), figure=False)  # fmt: skip
        analysis = XrdctAnalysis(paper_start_document(n_scans), config)
        rng = np.random.default_rng(0)
        # a few hundred distinct patterns, reused: generating 219 600 would time the generator
        bank = (rng.gamma(2.0, 1.0, (256, n_radial)) + np.sin(np.linspace(0, 40, n_radial)) ** 2).astype(np.float32)
        after_setup = sampler.rss_bytes()
        scans = []
        for scan in range(n_scans):
            sampler.reset()
            started = time.perf_counter()
            seq = 0
            for angle in range(n_angles):
                for translation in range(n_translations):
                    indices = {"scan": scan, "angle": angle, "translation": translation}
                    header = FrameHeader(run_uid="benchmark-xrdct-memory", stream="pilatus.integrated", seq=seq,
                                         timestamp=time.time(), dtype="<f4", shape=(n_radial,), positions={},
                                         indices=indices)  # fmt: skip
                    analysis.frame(Frame(header, bank[(angle * 7 + translation) % len(bank)]))
                    seq += 1
            scans.append({"peak_rss_gb": sampler.peak() / 1e9, "seconds": time.perf_counter() - started,
                          "in_flight_after": len(analysis.in_flight)})  # fmt: skip
        analysis.finish({"exit_status": "success"})
        file_gb = analysis.path.stat().st_size / 1e9
    sampler.close()
    one_scan_float32_gb = 4 * (n_angles * n_translations * n_radial + n_translations**2 * n_radial) / 1e9
    raw_frames_gb = 4 * 1679 * 1475 * n_angles * n_translations / 1e9
    peak = max(s["peak_rss_gb"] for s in scans)
    return {
        "preset": "paper", "n_angles": n_angles, "n_translations": n_translations, "n_radial": n_radial,
        "n_scans": n_scans, "baseline_rss_gb": baseline / 1e9, "after_setup_rss_gb": after_setup / 1e9,
        "scans": scans, "peak_rss_gb": peak,
        "one_scan_sinogram_plus_volume_float32_gb": one_scan_float32_gb,
        "one_scan_raw_frames_int32_gb": raw_frames_gb,
        "raw_frames_to_peak_rss_ratio": raw_frames_gb / peak,
        "last_to_first_scan_peak_ratio": scans[-1]["peak_rss_gb"] / scans[0]["peak_rss_gb"],
        "sidecar_file_gb": file_gb,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=2)
    args = parser.parse_args()
    results = {"benchmark": "xrdct_memory", "machine": machine_description(), **run(args.scans)}
    write_results(RESULTS, results)
    for key in ("peak_rss_gb", "one_scan_sinogram_plus_volume_float32_gb", "one_scan_raw_frames_int32_gb",
                "last_to_first_scan_peak_ratio"):  # fmt: skip
        print(f"{key}: {results[key]:.3f}")
    for i, scan in enumerate(results["scans"]):
        print(f"scan {i}: peak {scan['peak_rss_gb']:.2f} GB in {scan['seconds']:.0f} s")


if __name__ == "__main__":
    main()
