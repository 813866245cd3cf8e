"""PNG summary of an XCS-CT run (:func:`write_summary`), drawn from its results: the latest XCT slice through the
cathode with the mask's outline, the latest region spectrum, its Compton profile J(p_z),
the latest EMF map, and the region's EMF against capacity.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend), so
a consumer thread can write them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streaming.processing.compton import profile_from_spectrum

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .config import XcsctAnalysisConfig
    from .xct import XctResult

__all__ = ["write_summary"]

_XCS_PIXEL_MM = 0.25  # HEXITEC pixel pitch, imaged 1:1 by the pinhole


def _scale_bar(axes: Axes, pixel_mm: float, n_pixels: int, length_mm: float = 5.0) -> None:
    length_px = length_mm / pixel_mm
    x0, y0 = 0.05 * n_pixels, 0.92 * n_pixels
    axes.plot([x0, x0 + length_px], [y0, y0], color="white", linewidth=3)
    axes.text(x0 + length_px / 2, y0 - 0.03 * n_pixels, f"{length_mm:g} mm", color="white", ha="center", va="bottom")


def write_summary(
    path: Path,
    *,
    config: XcsctAnalysisConfig,
    results: dict[str, list[Any]],
    xct: list[XctResult],
    capacity_mah: np.ndarray,
) -> None:
    """Write the five-panel summary of a run to ``path``.

    Parameters
    ----------
    config : XcsctAnalysisConfig
        The analysis' settings (energy bins, region, XCT pixel size).
    results : dict of lists
        Per XCS acquisition, as :attr:`~.analysis.XcsctAnalysis.results` holds them
        (``emf_map``, ``emf_cathode`` and its sigma, ``spectrum_region``, ...).
    xct : list of XctResult
        The reduced XCT scans; the latest is drawn.
    capacity_mah : ndarray, shape (n_acquisitions,)
        The cell's capacity at each acquisition, mAh.
    """
    figure = Figure(figsize=(16, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    ct, spectrum_axes, profile_axes, emf_axes, trend = figure.subplots(1, 5)
    if xct:
        latest = xct[-1]
        rows = latest.masks[config.region_component].any(axis=(1, 2)).nonzero()[0]
        row = int(rows.mean()) if rows.size else latest.volume_per_m.shape[0] // 2
        image = ct.imshow(latest.volume_per_m[row], cmap="gray")
        ct.contour(latest.masks[config.region_component][row], levels=[0.5], colors="tab:red")
        figure.colorbar(image, ax=ct, label="μ (1/m)")
        _scale_bar(ct, config.xct_pixel_size_m * 1e3, latest.volume_per_m.shape[-1])
        ct.set_title(f"XCT scan {latest.scan}, row {row}")
    else:
        ct.set_title("no XCT scan")
    ct.set_xlabel("x (px)")
    ct.set_ylabel("y (px)")
    edges = config.hexitec.energy_edges_kev
    centres = 0.5 * (edges[1:] + edges[:-1])
    if results["emf_map"]:
        counts = np.asarray(results["spectrum_region"][-1], dtype=float)
        spectrum_axes.semilogy(centres, np.maximum(counts, 0.5), drawstyle="steps-mid")
        pz_edges, j = profile_from_spectrum(counts, edges, config.incident_kev, math.radians(config.angle_deg))
        pz = 0.5 * (pz_edges[1:] + pz_edges[:-1])
        near = np.abs(pz) < 10
        profile_axes.plot(pz[near], (j / np.diff(pz_edges))[near])
        for window in (-5, -1, 1, 5):
            profile_axes.axvline(window, color="grey", linestyle=":")
        emf_map = results["emf_map"][-1]
        # single pixels with few counts reach EMFs of 10: scale the colours to the bulk
        low, high = np.nanpercentile(emf_map, [2, 98]) if np.isfinite(emf_map).any() else (0.0, 1.0)
        image = emf_axes.imshow(emf_map, cmap="viridis", vmin=low, vmax=high)
        emf_axes.contour(results["region_mask"][-1], levels=[0.5], colors="tab:red")
        figure.colorbar(image, ax=emf_axes, label="EMF")
        _scale_bar(emf_axes, _XCS_PIXEL_MM, 80)
        emf_axes.set_title(f"EMF, scan {results['scan'][-1]}, z = {results['position_mm'][-1]:.2f} mm")
        trend.errorbar(capacity_mah, results["emf_cathode"], yerr=results["emf_cathode_sigma"], fmt="o")
    spectrum_axes.set(xlabel="energy (keV)", ylabel="counts per 0.2 keV", title="region spectrum", xlim=(40, 130))
    profile_axes.set(xlabel="p_z (a.u.)", ylabel="J(p_z) (arb. units per a.u.)", title="Compton profile")
    emf_axes.set(xlabel="x (px)", ylabel="y (px)")
    trend.set(xlabel="capacity (mAh)", ylabel=f"EMF ({config.region_component})", title="EMF vs capacity")
    figure.savefig(path, dpi=80)
