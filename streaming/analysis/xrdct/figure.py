"""PNG figures of an XRD-CT run, drawn from its results (arrays and the maps' dataclass).

- :func:`write_summary_figure`: one scan: the sinogram at one 2θ, the reconstruction at that
  2θ, the voxel-averaged pattern, each phase map and each lattice map.
- :func:`write_series_figure`: an operando series: each lattice map's mean against capacity,
  and the cell voltage at each scan.

Drawn on matplotlib's Agg canvas directly (no pyplot, no global backend), so a consumer
thread can write it. Images are in mm (pixel = translation step), with a scale bar.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from streaming.processing.maps import XrdctMaps

__all__ = ["write_series_figure", "write_summary_figure"]


def _scale_bar(axes: Axes, extent_mm: float) -> None:
    length_mm = max(0.5, round(extent_mm / 4))  # about a quarter of the image, whole mm
    x0, y0 = -0.45 * extent_mm, 0.42 * extent_mm
    axes.plot([x0, x0 + length_mm], [y0, y0], color="white", linewidth=3)
    axes.text(x0 + length_mm / 2, y0 - 0.03 * extent_mm, f"{length_mm:g} mm", color="white", ha="center", va="bottom")


def _image(figure: Figure, axes: Axes, image: np.ndarray, extent_mm: float, *, title: str, label: str,
           robust: bool = False) -> None:  # fmt: skip
    """``robust``: colours over the median ± 5 MADs (a lattice map's few voxels of stray fits
    outside the cathode would otherwise stretch the scale over 2 Å and flatten the cathode)."""
    half = extent_mm / 2
    finite = image[np.isfinite(image)]
    limits = np.percentile(finite, (1, 99)) if finite.size else (0, 1)
    if robust and finite.size:
        median = float(np.median(finite))
        spread = 5 * 1.4826 * float(np.median(np.abs(finite - median))) or 1e-3
        limits = (max(limits[0], median - spread), min(limits[1], median + spread))
    shown = axes.imshow(image, extent=(-half, half, half, -half), cmap="viridis", vmin=limits[0], vmax=limits[1])
    figure.colorbar(shown, ax=axes, label=label, shrink=0.8)
    _scale_bar(axes, extent_mm)
    axes.set(title=title, xlabel="x (mm)", ylabel="y (mm)")


def write_summary_figure(
    path: Path,
    *,
    sinogram: np.ndarray,
    reconstruction: np.ndarray,
    maps: XrdctMaps,
    radial_deg: np.ndarray,
    angles_deg: np.ndarray,
    translations_mm: np.ndarray,
    center_px: float,
    channel_deg: float | None = None,
    title: str | None = None,
) -> None:
    """Write the summary of one scan to ``path``.

    Parameters
    ----------
    sinogram : ndarray, shape (n_angles, n_translations, n_radial)
        The scan's patterns as placed.
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
    maps : XrdctMaps
        The scan's phase and lattice maps.
    radial_deg, angles_deg, translations_mm : ndarray
        2θ of the channels (deg), rotation angles (deg), translation positions (mm).
    center_px : float
        The reconstruction's centre of rotation (translation-index units).
    channel_deg : float or None
        2θ of the channel shown; None for the strongest of the mean voxel pattern.
    title : str or None
        Drawn above the panels (a series' scan number).
    """
    radial = radial_deg
    mean_pattern = np.nanmean(reconstruction, axis=(0, 1))
    if channel_deg is None:
        channel = int(np.nanargmax(mean_pattern))
    else:
        channel = int(np.argmin(np.abs(radial - channel_deg)))
    phases = maps.phases.weights if maps.phases is not None else {}
    lattices = maps.lattices
    n_panels = 3 + len(phases) + len(lattices)
    n_columns = min(4, n_panels)
    n_rows = math.ceil(n_panels / n_columns)
    figure = Figure(figsize=(4.2 * n_columns, 3.6 * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    panels = list(np.atleast_1d(figure.subplots(n_rows, n_columns)).ravel())
    step_mm = float(abs(translations_mm[1] - translations_mm[0]))
    extent_mm = step_mm * reconstruction.shape[1]

    sinogram_axes = panels.pop(0)
    t = translations_mm
    shown = sinogram_axes.imshow(sinogram[:, :, channel], aspect="auto", cmap="magma",
                                 extent=(t[0], t[-1], angles_deg[-1], angles_deg[0]))  # fmt: skip
    figure.colorbar(shown, ax=sinogram_axes, label="intensity (a.u.)", shrink=0.8)
    sinogram_axes.set(title=f"sinogram at 2θ = {radial[channel]:.3f}°", xlabel="translation (mm)",
                      ylabel="rotation (°)")  # fmt: skip

    _image(figure, panels.pop(0), reconstruction[:, :, channel], extent_mm,
           title=f"reconstruction at 2θ = {radial[channel]:.3f}° (COR {center_px:.2f} px)",
           label="intensity per step (a.u.)")  # fmt: skip

    pattern_axes = panels.pop(0)
    pattern_axes.plot(radial, mean_pattern)
    pattern_axes.axvline(radial[channel], color="grey", linestyle=":")
    pattern_axes.set(title="mean voxel pattern", xlabel="2θ (°)", ylabel="intensity (a.u.)")

    for name, image in phases.items():
        _image(figure, panels.pop(0), image, extent_mm, title=f"phase {name}", label="weight (∝ volume fraction)")
    for name, image in lattices.items():
        _image(figure, panels.pop(0), image, extent_mm, title=f"lattice {name}", label="Å", robust=True)
    for axes in panels:
        axes.set_axis_off()
    if title is not None:
        figure.suptitle(title)
    figure.savefig(path, dpi=70)


def write_series_figure(path: Path, series: dict[str, np.ndarray]) -> None:
    """Write an operando series to ``path``: each lattice map's mean against capacity (or
    scan number without potentiostat readings), and the cell voltage at each scan.

    ``series``: the columns of :meth:`~.series.ScanSeries.columns` (``scan``, ``capacity``
    in mAh, ``voltage`` in V, ``mean_<lattice>`` in Å).
    """
    lattice_names = [name for name in series if name.startswith("mean_")]
    has_capacity = bool(np.isfinite(series["capacity"]).all())
    x = series["capacity"] if has_capacity else series["scan"]
    x_label = "capacity (mAh)" if has_capacity else "scan"
    figure = Figure(figsize=(4.4 * (len(lattice_names) + 1), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    panels = np.atleast_1d(figure.subplots(1, len(lattice_names) + 1))
    for axes, name in zip(panels, lattice_names, strict=False):
        axes.plot(x, series[name], "o-")
        for xi, yi, index in zip(x, series[name], series["scan"], strict=True):
            axes.annotate(f"{index}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        axes.set(title=f"mean {name[5:]}", xlabel=x_label, ylabel=f"{name[5:]} (Å)")
    voltage_axes = panels[-1]
    voltage_axes.plot(x, series["voltage"], "s-", color="tab:red")
    voltage_axes.set(title="cell voltage at each scan", xlabel=x_label, ylabel="voltage (V)")
    figure.savefig(path, dpi=70)
