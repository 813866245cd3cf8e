"""The angular side of an XCT scan: stripes (rings) and projections that never arrived.

- :func:`fill_missing_projections`: projections that never arrived, interpolated along the
  angle from their neighbours, so ring removal and FBP see the evenly spread angles they need.
- :func:`remove_rings`: sinogram-domain stripe (ring) removal.
- :func:`covers_full_turn`: whether angles are evenly spread over 2π (``"mirror"`` needs it).

Axes and units as in :mod:`.xct`: sinograms ``(n_angles, n_cols)`` or stacks
``(n_angles, n_rows, n_cols)``, angles in rad.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["covers_full_turn", "fill_missing_projections", "remove_rings"]


def _robust_sigma(values: np.ndarray) -> np.ndarray:
    """1.4826 × median absolute deviation along the last axis (kept as a length-1 axis)."""
    centred = values - np.median(values, axis=-1, keepdims=True)
    return 1.4826 * np.median(np.abs(centred), axis=-1, keepdims=True)


def _interpolate_columns(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values[..., i]`` at fractional column ``position`` (clamped)."""
    n = values.shape[-1]
    position = np.clip(position, 0, n - 1)
    low = np.minimum(np.floor(position).astype(int), n - 2) if n > 1 else np.zeros(position.shape, int)
    weight = position - low
    high = np.minimum(low + 1, n - 1)
    return values[..., low] * (1 - weight) + values[..., high] * weight


def fill_missing_projections(projections: np.ndarray, present: np.ndarray, *, full_turn: bool) -> np.ndarray:
    """Projections that never arrived, each interpolated linearly along the angle between the
    nearest ones that did.

    FBP weights every angle of an even grid alike, and the ``"mirror"`` ring removal pairs θ
    with θ + π: both need the whole grid. Interpolating a missing projection from its
    neighbours keeps them right; a gap of many degrees leaves the limited-angle artefacts no
    method avoids (streaks along the missing directions), and results say how many were
    interpolated.

    Parameters
    ----------
    projections : ndarray, shape (n_angles, n_rows, n_cols) or (n_angles, n_cols)
        Absorbance on an even grid of angles; the values of missing ones are not used.
    present : ndarray of bool, shape (n_angles,)
        Which projections arrived.
    full_turn : bool
        The grid spans 2π: the last angle's neighbour is the first (otherwise the ends take
        the nearest projection that arrived).

    Returns
    -------
    ndarray of float32, same shape (a new array)

    Raises
    ------
    ValueError
        If fewer than two projections arrived, or ``present`` does not match.
    """
    data = np.array(projections, dtype=np.float32)
    present = np.asarray(present, dtype=bool)
    if present.shape != data.shape[:1]:
        raise ValueError(f"present must have shape ({data.shape[0]},), got {present.shape}")
    have = np.flatnonzero(present)
    if have.size < 2:
        raise ValueError(f"need at least 2 projections to interpolate from, have {have.size}")
    missing = np.flatnonzero(~present)
    if not missing.size:
        return data
    n = present.size
    after_index = np.searchsorted(have, missing)
    if full_turn:
        before, after = have[after_index - 1], have[after_index % have.size]
        gap_before, gap_after = (missing - before) % n, (after - missing) % n
    else:
        before = have[np.maximum(after_index - 1, 0)]
        after = have[np.minimum(after_index, have.size - 1)]
        gap_before, gap_after = np.abs(missing - before), np.abs(after - missing)
    weight = (gap_before / np.maximum(gap_before + gap_after, 1)).astype(np.float32)
    weight = weight.reshape(-1, *([1] * (data.ndim - 1)))
    data[missing] = (1 - weight) * data[before] + weight * data[after]
    return data


def covers_full_turn(theta_rad: np.ndarray) -> bool:
    """Angles spread evenly over a whole turn: every ray is seen from both sides."""
    if theta_rad.size < 2:
        return False
    step = np.diff(np.sort(theta_rad))
    return bool(np.allclose(step, 2 * np.pi / theta_rad.size, rtol=1e-3, atol=0))


def remove_rings(
    sinograms: np.ndarray,
    theta_rad: np.ndarray,
    *,
    center_px: float | None = None,
    method: str = "mirror",
    size_px: int = 21,
    snr: float = 3.0,
) -> np.ndarray:
    """Remove full-length stripes (ring artefacts) from absorbance sinograms.

    A detector column whose gain drifted after the flats were taken adds the same offset
    ``-log(gain)`` to the absorbance at every angle: a vertical stripe in the sinogram, a
    ring in the slice. Both methods estimate that offset from the column means over angles
    and subtract it from the columns where it stands out by more than ``snr`` robust
    standard deviations.

    ``"median"`` (the normalisation approach of Vo et al. 2018): the offset is the column
    mean's deviation from its median filter over ``size_px`` columns. It works for any
    angular range, but it cannot tell a stripe from a genuine feature that is constant over
    angles: a thin rotationally symmetric shell such as a coin cell's can wall is flattened
    and leaves a ring of its own.

    ``"mirror"`` (for scans over a whole turn, as the XCS-CT paper's 3600 projections over
    360°): column ``c`` at θ and column ``2 c₀ - c`` at θ + π see the same ray, so for any
    object their column means are equal and their difference is the stripe alone. The
    difference is given to whichever of the two columns stands out more from its neighbours
    (summed over the rows of a stack); the other keeps its value. Symmetric features are
    untouched. Columns whose mirror falls off the detector are left as they are.

    Chosen over wavelet-FFT filtering (Münch et al. 2009) because both touch only the
    stripe's columns and are exact for the additive full-length stripes a drifted column
    gives; partial stripes (a column that fails during the scan) are out of their scope.

    Parameters
    ----------
    sinograms : ndarray, shape (n_angles, n_cols) or (n_angles, n_rows, n_cols)
        Absorbance (not modified).
    theta_rad : ndarray of float, shape (n_angles,)
        Angle of each projection, radians; ``"mirror"`` needs them evenly spread over 2π.
    center_px : float, optional
        Rotation-axis column (column ``i``'s centre at ``i``); default ``(n_cols - 1) / 2``.
    method : {"mirror", "median"}
    size_px : int
        ``"median"`` only: width of the median filter along the detector, columns (odd, >= 3).
    snr : float
        Offsets smaller than this many robust standard deviations are left alone.

    Returns
    -------
    ndarray of float32, same shape as ``sinograms``

    References
    ----------
    N. T. Vo, R. C. Atwood, M. Drakopoulos, "Superior techniques for eliminating ring
    artifacts in X-ray micro-tomography", Opt. Express 26, 28396 (2018).
    """
    data = np.asarray(sinograms, dtype=np.float32)
    if data.ndim not in (2, 3):
        raise ValueError(
            f"sinograms must have shape (n_angles, n_cols) or (n_angles, n_rows, n_cols), got {data.shape}"
        )
    theta = np.asarray(theta_rad, dtype=np.float64)
    if theta.shape != (data.shape[0],):
        raise ValueError(f"theta_rad must have shape ({data.shape[0]},), got {theta.shape}")
    if method not in ("mirror", "median"):
        raise ValueError(f"method must be 'mirror' or 'median', got {method!r}")
    if method == "mirror" and not covers_full_turn(theta):
        raise ValueError("method='mirror' needs angles evenly spread over 2π; use method='median'")
    if size_px < 3 or size_px % 2 == 0:
        raise ValueError(f"size_px must be odd and >= 3, got {size_px}")
    if snr < 0:
        raise ValueError(f"snr must be >= 0, got {snr}")
    n_cols = data.shape[-1]
    column_mean = data.mean(axis=0, dtype=np.float64)  # (n_cols,) or (n_rows, n_cols)
    if method == "median":
        filter_size = (size_px,) if column_mean.ndim == 1 else (1, size_px)
        offset = column_mean - ndimage.median_filter(column_mean, size=filter_size, mode="nearest")
        usable = np.ones(n_cols, bool)
        sigma = _robust_sigma(offset)
    else:
        centre = (n_cols - 1) / 2 if center_px is None else float(center_px)
        mirror = 2 * centre - np.arange(n_cols)
        usable = (mirror >= 0) & (mirror <= n_cols - 1)
        offset = column_mean - _interpolate_columns(column_mean, mirror)  # stripe(c) - stripe(mirror)
        sigma = _robust_sigma(offset[..., usable]) if usable.any() else np.zeros_like(offset[..., :1])
        # which column of a pair holds the stripe: the one that stands out more from its two
        # neighbours (a local second difference, which the object's edges disturb only where
        # they are), summed over the rows of a stack (a camera's column defect is in all of
        # them, while the object's edges move from row to row)
        padded = np.concatenate([column_mean[..., :1], column_mean, column_mean[..., -1:]], axis=-1)
        spike = np.abs(column_mean - 0.5 * (padded[..., :-2] + padded[..., 2:])).reshape(-1, n_cols).sum(axis=0)
        offset = np.where(spike >= _interpolate_columns(spike, mirror), offset, 0.0)
    stripe = np.where(usable & (np.abs(offset) > snr * sigma), offset, 0.0)
    return (data - stripe[None].astype(np.float32)).astype(np.float32)
