"""The layout of a reconstruction: :func:`_voxels` checks it and flattens it to voxel patterns.

A reconstruction is ``(n_y, n_x, n_radial)``, 2θ degrees on the radial axis (the package's
"Axes"); :func:`_voxels` is shared by :mod:`.intensities`, :mod:`.peaks` and :mod:`.phases`.
"""

from __future__ import annotations

import numpy as np

__all__: list[str] = []  # _voxels is shared by the modules of this package only


def _voxels(reconstruction: np.ndarray, radial_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    volume = np.asarray(reconstruction)
    radial = np.asarray(radial_deg, dtype=np.float64)
    if volume.ndim != 3 or radial.shape != (volume.shape[2],):
        raise ValueError(f"reconstruction must be (n_y, n_x, n_radial) with n_radial = {radial.size}, "
                         f"got {volume.shape}")  # fmt: skip
    return volume.reshape(-1, volume.shape[2]), radial
