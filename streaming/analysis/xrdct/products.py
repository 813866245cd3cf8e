"""What the live XRD-CT analysis publishes on the products channel (:mod:`streaming.analysis.products`).

- ``xrdct.patterns``: the 2θ axis (deg), the latest pattern and the mean of the scan under way,
  and the channel shown by default (the figure's, or the strongest of the mean pattern).
- ``xrdct.scan@<channel>``: for the default channel and every channel a receiver asks for
  (``xrdct.channel``), the scan under way at that 2θ: its sinogram, which positions are filled,
  the total intensity of each pattern, and the reconstruction growing line by line (once the
  live FBP has started), with lines done and the centre of rotation; once the scan is over,
  its final reconstruction until the next scan begins.
- ``xrdct.maps``: the last finished scan's phase and lattice maps (Å), voxel size (mm).
- ``xrdct.series``: per finished scan, time, voltage, capacity, centre and mean lattices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from streaming.processing.maps import XrdctMaps
from streaming.wire.products import Product, product_key

__all__ = ["FinishedMaps", "xrdct_products"]


class FinishedMaps(NamedTuple):
    """The maps of a run's last finished scan, kept for the products channel after the scan's
    volumes are dropped (a few images)."""

    scan: int
    center_px: float
    maps: XrdctMaps
    mean_lattices: dict[str, float]


#: Channels a receiver may ask for at once (several dashboards, each its own choice).
MAX_REQUESTED_CHANNELS = 8


def xrdct_products(analysis: Any, requested: Callable[[str], set[str]]) -> list[Product]:
    """The products of ``analysis`` (an :class:`~.analysis.XrdctAnalysis`) now (see the module docstring)."""
    uid = analysis.start["uid"]
    radial = analysis.radial_deg
    default = analysis.default_channel()
    products = [Product("xrdct.patterns", {"default_channel": default, "n_patterns": analysis.n_scan_patterns,
                                           "wavelength_angstrom": analysis.wavelength_angstrom},
                        {"two_theta_deg": radial.astype(np.float32), **analysis.pattern_arrays()},
                        run_uid=uid)]  # fmt: skip
    # the scan under way, or the last finished one (its final image) until the next begins
    scan = next(reversed(analysis.in_flight.values()), None) if analysis.in_flight else analysis.scan
    if scan is not None and not scan.partial:
        channels = {default}
        for value in sorted(requested("xrdct.channel"))[:MAX_REQUESTED_CHANNELS]:
            if value.isdigit() and int(value) < radial.size:
                channels.add(int(value))
        step_mm = float(abs(np.diff(analysis.translations_mm[:2])[0])) if analysis.n_translations > 1 else 0.0
        translations = [float(analysis.translations_mm[0]), float(analysis.translations_mm[-1])]
        angles = [float(analysis.angles_deg[0]), float(analysis.angles_deg[-1])]
        for channel in sorted(channels):
            arrays = {"sinogram": scan.sinogram.channel(channel), "filled": scan.sinogram.filled.astype(np.uint8),
                      "total_intensity": scan.sinogram.total_intensity}  # fmt: skip
            image = scan.fbp.channel_image(channel) if scan.fbp is not None else None
            if scan.reconstruction is not None:
                image = scan.reconstruction[:, :, channel]
            if image is not None:
                arrays["reconstruction"] = image
            centre = scan.reconstruction_center_px if scan.reconstruction is not None else scan.live_center_px
            products.append(Product(f"xrdct.scan@{channel}", {
                "scan": scan.index, "channel": channel, "two_theta_deg": float(radial[channel]),
                "lines_done": int(scan.sinogram.completed_lines.size), "n_angles": analysis.n_angles,
                "n_translations": analysis.n_translations, "patterns_placed": scan.sinogram.n_filled,
                "center_px": None if centre is None else float(centre), "pixel_size_mm": step_mm,
                "finished": scan.reconstruction is not None, "translation_range_mm": translations,
                "angle_range_deg": angles,
            }, arrays, run_uid=uid))  # fmt: skip
    finished = analysis.last_maps
    if finished is not None:
        maps = finished.maps
        arrays = {f"lattice:{product_key(name)}": image.astype(np.float32) for name, image in maps.lattices.items()}
        if maps.phases is not None:
            arrays.update({f"phase:{product_key(name)}": image for name, image in maps.phases.weights.items()})
        step_mm = float(abs(np.diff(analysis.translations_mm[:2])[0])) if analysis.n_translations > 1 else 0.0
        products.append(Product("xrdct.maps", {"scan": finished.scan, "center_px": finished.center_px,
                                               "pixel_size_mm": step_mm, "mean_lattice_angstrom":
                                               {k: _finite(v) for k, v in finished.mean_lattices.items()}},
                                arrays, run_uid=uid))  # fmt: skip
    if len(analysis.finished_scans):
        columns = {key: np.asarray(values, dtype=np.float64) for key, values in analysis.series().items()}
        products.append(Product("xrdct.series", {"n_scans": len(analysis.finished_scans)}, columns, run_uid=uid))
    return products


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
