"""What the live XCS-CT analysis publishes on the products channel (:mod:`streaming.analysis.products`).

- ``xcs.spectrum``: the energy axis (keV, bin centres) and the spectrum summed over the
  detector of the acquisition under way (or the last one), with its frames so far.
- ``xcs.emf``: the last finished acquisition's EMF map and its Poisson σ (80 x 80), the
  cathode region it was averaged over, and that average ± σ at its height (mm).
- ``xcs.series``: per acquisition, the cathode EMF ± σ, its time (s since the epoch) and the
  potentiostat's capacity (mAh) and voltage (V) at that time.
- ``xct.slice``: the latest XCT volume's row through the middle of the cathode (μ, 1/m) with
  its segmentation (component index per voxel, 0 for none, names in ``components``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streaming.wire.products import Product

__all__ = ["xcsct_products"]


def xcsct_products(analysis: Any, requested: Callable[[str], set[str]]) -> list[Product]:
    """The products of ``analysis`` (an :class:`~.analysis.XcsctAnalysis`) now (see the module
    docstring); ``requested`` is unused (nothing here depends on a receiver's choice)."""
    del requested
    uid = analysis.start["uid"]
    edges = analysis.config.hexitec.energy_edges_kev
    centres = (0.5 * (edges[:-1] + edges[1:])).astype(np.float32)
    products = []
    spectrum, n_frames = analysis.current_spectrum()
    if spectrum is not None:
        products.append(Product("xcs.spectrum", {"n_frames": n_frames}, {"energy_kev": centres,
                                                                        "counts": spectrum.astype(np.float64)},
                                run_uid=uid))  # fmt: skip
    results = analysis.results
    if results["scan"]:
        products.append(Product("xcs.emf", {
            "scan": int(results["scan"][-1]), "position": int(results["position"][-1]),
            "height_mm": float(results["position_mm"][-1]), "emf_cathode": float(results["emf_cathode"][-1]),
            "emf_cathode_sigma": float(results["emf_cathode_sigma"][-1]),
        }, {"emf": np.asarray(results["emf_map"][-1], np.float32), "emf_sigma": np.asarray(results["emf_sigma"][-1],
                                                                                          np.float32),
            "region": np.asarray(results["region_mask"][-1], np.uint8)}, run_uid=uid))  # fmt: skip
        times = np.asarray(results["emf_time"], np.float64)
        products.append(Product("xcs.series", {"n_acquisitions": int(times.size)}, {
            "time": times, "emf_cathode": np.asarray(results["emf_cathode"], np.float64),
            "emf_cathode_sigma": np.asarray(results["emf_cathode_sigma"], np.float64),
            "capacity": analysis.readings.at(times, "capacity"), "voltage": analysis.readings.at(times, "voltage"),
            "scan": np.asarray(results["scan"], np.int64)}, run_uid=uid))  # fmt: skip
    if analysis.xct:
        xct = analysis.xct[-1]
        cathode_rows = np.flatnonzero(xct.masks["cathode"].any(axis=(1, 2))) if "cathode" in xct.masks else []
        # the cathode's middle row: where the XCS acquisitions look (else the volume's middle)
        row = int(np.median(cathode_rows)) if len(cathode_rows) else xct.volume_per_m.shape[0] // 2
        names = sorted(xct.masks)
        labels = np.zeros(xct.volume_per_m.shape[1:], np.uint8)
        for index, name in enumerate(names, start=1):
            labels[xct.masks[name][row]] = index
        voxel_mm = analysis.config.xct_pixel_size_m * 1e3
        products.append(Product("xct.slice", {"scan": xct.scan, "row": row, "components": names,
                                              "voxel_mm": voxel_mm},
                                {"mu_per_m": xct.volume_per_m[row].astype(np.float32), "labels": labels},
                                run_uid=uid))  # fmt: skip
    return products
