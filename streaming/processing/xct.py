"""XCT reduction of a coin cell: projections in, reconstructed μ slices out.

- :func:`flat_dark_correct`, :func:`minus_log`, :func:`absorbance`: transmission
  ``(P - D) / (F - D)`` from averaged flats and darks, and ``-log`` of it (clipped so that a
  dead or saturated pixel gives a large finite value, not inf).
- :func:`centre_sinogram`: moves the rotation axis to the detector's centre.
- :func:`reconstruct`: filtered back-projection of one sinogram or a stack (astra-toolbox's
  CPU ``FBP``; tomopy's ``gridrec`` when tomopy is importable and asked for).

Ring removal and the completion of a scan's missing projections are in :mod:`.rings`;
segmentation of the reconstructed volume is in :mod:`.segmentation`.

Axes: projections ``(n_angles, n_rows, n_cols)``, sinograms ``(n_angles, n_cols)`` (or a
stack ``(n_angles, n_rows, n_cols)``), volumes ``(n_rows, n_y, n_x)`` with camera rows along
the cell's axis (z). Angles in rad, lengths in m, attenuation μ in 1/m.
"""

from __future__ import annotations

import importlib

import astra
import numpy as np
from scipy import ndimage

__all__ = [
    "ASTRA_FILTERS",
    "absorbance",
    "centre_sinogram",
    "flat_dark_correct",
    "minus_log",
    "reconstruct",
]

ASTRA_FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")
_TOMOPY_FILTERS = {
    "ram-lak": "ramlak",
    "shepp-logan": "shepp",
    "cosine": "cosine",
    "hamming": "hamming",
    "hann": "hann",
}


# -- flat, dark, -log -------------------------------------------------------------------------


def _mean_image(images: np.ndarray, name: str, shape: tuple[int, int]) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 3:
        images = images.mean(axis=0)
    if images.shape != shape:
        raise ValueError(f"{name} must have shape (n, {shape[0]}, {shape[1]}) or {shape}, got {images.shape}")
    return images


def flat_dark_correct(projections: np.ndarray, flats: np.ndarray, darks: np.ndarray) -> np.ndarray:
    """Transmission ``(P - D) / (F - D)`` with flats and darks averaged over their first axis.

    Parameters
    ----------
    projections : ndarray, shape (n_angles, n_rows, n_cols)
        Raw camera images (any real dtype, not modified).
    flats, darks : ndarray, shape (n, n_rows, n_cols) or (n_rows, n_cols)
        Beam-on images without the sample and beam-off images.

    Returns
    -------
    ndarray of float32, shape (n_angles, n_rows, n_cols)
        Transmission; 0 where the flat is not above the dark.
    """
    projections = np.asarray(projections)
    if projections.ndim != 3:
        raise ValueError(f"projections must have shape (n_angles, n_rows, n_cols), got {projections.shape}")
    shape = projections.shape[1:]
    dark = _mean_image(darks, "darks", shape)
    beam = _mean_image(flats, "flats", shape) - dark
    scale = np.divide(1.0, beam, out=np.zeros_like(beam), where=beam > 0).astype(np.float32)
    return (projections.astype(np.float32) - dark.astype(np.float32)) * scale


def minus_log(transmission: np.ndarray, *, min_transmission: float = 1e-6) -> np.ndarray:
    """Absorbance ``-log(max(T, min_transmission))`` (float32): clipping keeps dead pixels and
    noise below the dark level finite."""
    if not 0 < min_transmission < 1:
        raise ValueError(f"min_transmission must be within (0, 1), got {min_transmission}")
    return -np.log(np.maximum(np.asarray(transmission, dtype=np.float32), np.float32(min_transmission)))


def absorbance(
    projections: np.ndarray, flats: np.ndarray, darks: np.ndarray, *, min_transmission: float = 1e-6
) -> np.ndarray:
    """:func:`flat_dark_correct` then :func:`minus_log`: line integrals ∫μ dl in pixel units."""
    return minus_log(flat_dark_correct(projections, flats, darks), min_transmission=min_transmission)


# -- rings --------------------------------------------------------------------------------------


# -- reconstruction -----------------------------------------------------------------------------


def centre_sinogram(sinograms: np.ndarray, center_px: float) -> np.ndarray:
    """Shift sinograms along the detector so the rotation axis lands on its centre.

    Parameters
    ----------
    sinograms : ndarray, shape (n_angles, n_cols) or (n_angles, n_rows, n_cols)
    center_px : float
        Column of the rotation axis, pixels, with column ``i``'s centre at ``i`` (a centred
        axis is ``(n_cols - 1) / 2``).

    Returns
    -------
    ndarray of float32, same shape
        Cubic-spline shifted; columns that come in from outside repeat the edge column.
    """
    data = np.asarray(sinograms, dtype=np.float32)
    shift_px = (data.shape[-1] - 1) / 2 - center_px
    if shift_px == 0:
        return data.copy()
    shifts = [0.0] * (data.ndim - 1) + [shift_px]
    return ndimage.shift(data, shifts, order=3, mode="nearest").astype(np.float32)


def _reconstruct_astra(sinograms: np.ndarray, theta_rad: np.ndarray, n_pixels: int, filter_name: str) -> np.ndarray:
    n_rows, n_cols = sinograms.shape[1], sinograms.shape[2]
    volume_geometry = astra.create_vol_geom(n_pixels, n_pixels)
    projection_geometry = astra.create_proj_geom("parallel", 1.0, n_cols, theta_rad)
    projector = astra.create_projector("linear", projection_geometry, volume_geometry)
    sinogram_id = astra.data2d.create("-sino", projection_geometry, 0.0)
    volume_id = astra.data2d.create("-vol", volume_geometry, 0.0)
    config = astra.astra_dict("FBP")
    config.update(ProjectionDataId=sinogram_id, ReconstructionDataId=volume_id, ProjectorId=projector)
    config["FilterType"] = filter_name
    algorithm = astra.algorithm.create(config)
    out = np.empty((n_rows, n_pixels, n_pixels), np.float32)
    try:
        for row in range(n_rows):
            astra.data2d.store(sinogram_id, sinograms[:, row, :])
            astra.data2d.store(volume_id, 0.0)
            astra.algorithm.run(algorithm)
            out[row] = astra.data2d.get_shared(volume_id)
    finally:
        astra.algorithm.delete(algorithm)
        astra.data2d.delete([sinogram_id, volume_id])
        astra.projector.delete(projector)
    return out


def _reconstruct_tomopy(sinograms: np.ndarray, theta_rad: np.ndarray, n_pixels: int, filter_name: str) -> np.ndarray:
    tomopy = importlib.import_module("tomopy")
    n_cols = sinograms.shape[2]
    # tomopy puts a centred axis at n_cols / 2 (pixel edges at integers); the data are centred
    volume = tomopy.recon(
        sinograms,
        theta_rad,
        center=n_cols / 2,
        algorithm="gridrec",
        filter_name=_TOMOPY_FILTERS[filter_name],
        num_gridx=n_pixels,
        num_gridy=n_pixels,
        ncore=1,
    )
    return np.asarray(volume, dtype=np.float32)


def reconstruct(
    sinograms: np.ndarray,
    theta_rad: np.ndarray,
    *,
    center_px: float | None = None,
    n_pixels: int | None = None,
    pixel_size_m: float = 1.0,
    filter_name: str = "ram-lak",
    backend: str = "astra",
) -> np.ndarray:
    """Filtered back-projection of absorbance sinograms (parallel beam).

    Parameters
    ----------
    sinograms : ndarray, shape (n_angles, n_cols) or (n_angles, n_rows, n_cols)
        Absorbance, ∫μ dl in units of the detector pixel (see :func:`absorbance`).
    theta_rad : ndarray of float, shape (n_angles,)
        Rotation angle of each projection, radians (180° or 360° scans).
    center_px : float, optional
        Rotation-axis column (column ``i``'s centre at ``i``); default the detector centre
        ``(n_cols - 1) / 2``. Other values shift the sinograms first (:func:`centre_sinogram`),
        as astra's CPU FBP only knows the centred ``parallel`` geometry.
    n_pixels : int, optional
        Reconstructed slices are ``n_pixels`` square, of the detector's pixel size; default
        ``n_cols``.
    pixel_size_m : float
        Detector pixel size at the sample, m: the slices are divided by it, so they hold μ in
        1/m. Leave 1.0 for μ per pixel.
    filter_name : {"ram-lak", "shepp-logan", "cosine", "hamming", "hann"}
    backend : {"astra", "tomopy"}
        ``"tomopy"`` (gridrec) needs tomopy installed and raises ``ImportError`` otherwise;
        it is never chosen silently.

    Returns
    -------
    ndarray of float32, shape (n_pixels, n_pixels) or (n_rows, n_pixels, n_pixels)
        Slices, rows along y and columns along x as in astra's volume geometry.
    """
    data = np.asarray(sinograms, dtype=np.float32)
    single = data.ndim == 2
    if single:
        data = data[:, None, :]
    if data.ndim != 3:
        raise ValueError(
            f"sinograms must have shape (n_angles, n_cols) or (n_angles, n_rows, n_cols), got {data.shape}"
        )
    theta = np.asarray(theta_rad, dtype=np.float64)
    if theta.shape != (data.shape[0],):
        raise ValueError(f"theta_rad must have shape ({data.shape[0]},), got {theta.shape}")
    if filter_name not in ASTRA_FILTERS:
        raise ValueError(f"filter_name must be one of {', '.join(ASTRA_FILTERS)}, got {filter_name!r}")
    if backend not in ("astra", "tomopy"):
        raise ValueError(f"backend must be 'astra' or 'tomopy', got {backend!r}")
    if not pixel_size_m > 0:
        raise ValueError(f"pixel_size_m must be > 0, got {pixel_size_m}")
    n_pixels = data.shape[2] if n_pixels is None else int(n_pixels)
    if n_pixels < 1:
        raise ValueError(f"n_pixels must be >= 1, got {n_pixels}")
    if center_px is not None:
        data = centre_sinogram(data, center_px)
    else:
        data = np.ascontiguousarray(data)
    if backend == "astra":
        volume = _reconstruct_astra(data, theta, n_pixels, filter_name)
    else:
        volume = _reconstruct_tomopy(data, theta, n_pixels, filter_name)
    volume /= np.float32(pixel_size_m)
    return volume[0] if single else volume
