"""Window intensities: :func:`window_intensity` gives each voxel's background-subtracted
integrated intensity in a :class:`~.config.PeakWindow`.
"""

from __future__ import annotations

import numpy as np

from .config import PeakWindow
from .voxels import _voxels

__all__ = ["window_intensity"]


def window_intensity(reconstruction: np.ndarray, radial_deg: np.ndarray, window: PeakWindow) -> np.ndarray:
    """Integrated intensity in a 2θ window above a linear background, per voxel.

    Parameters
    ----------
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
    radial_deg : ndarray of float, shape (n_radial,)
        Bin centres, 2θ degrees (uniform spacing).
    window : PeakWindow

    Returns
    -------
    ndarray of float32, shape (n_y, n_x)
        ``Σ (I - background) · Δ2θ`` over the bins whose centres lie in the window
        (intensity x degrees).
    """
    flat, radial = _voxels(reconstruction, radial_deg)
    low, high = window.window_deg
    inside = (radial >= low) & (radial <= high)
    if not inside.any():
        raise ValueError(f"window {window.name} {window.window_deg} holds no bin of the radial axis")
    step = float(np.median(np.diff(radial)))
    values = flat[:, inside].astype(np.float64)
    width = window.background_width_deg
    if width > 0:
        below = (radial >= low - width) & (radial < low)
        above = (radial > high) & (radial <= high + width)
        if not (below.any() and above.any()):
            raise ValueError(f"background windows of {window.name} hold no bin of the radial axis")
        x0, x1 = radial[below].mean(), radial[above].mean()
        y0, y1 = flat[:, below].mean(axis=1), flat[:, above].mean(axis=1)
        slope = (y1 - y0) / (x1 - x0)
        values = values - (y0[:, None] + slope[:, None] * (radial[inside] - x0))
    return (values.sum(axis=1) * step).reshape(reconstruction.shape[:2]).astype(np.float32)
