"""Segmentation of a coin cell's XCT volume, and its masks on the XCS detector's grid.

- :class:`SegmentationConfig`: median filter, opening, multi-Otsu classes, pore level.
- :func:`segment_coin_cell` → :class:`CellSegmentation`: masks of the casing, cathode,
  separator, Li anode, spacer and pores, found by intensity classes and connected
  components and named by the coin cell's layer order along its axis.
- :func:`mask_on_xcs_grid`: a volume mask seen through the XCS sheet beam, on the HEXITEC's
  80 × 80 pixels (the XCS-CT paper's "XCT mask on the XCS grid").

Volumes are ``(n_rows, n_y, n_x)`` with rows along the cell's axis, as
:func:`streaming.processing.xct.reconstruct` returns them; μ in 1/m, lengths in m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from streaming.errors import ConfigError

__all__ = ["COMPONENTS", "CellSegmentation", "SegmentationConfig", "mask_on_xcs_grid", "segment_coin_cell"]

COMPONENTS = ("casing", "cathode", "separator", "anode", "spacer", "pores")


@dataclass(frozen=True, kw_only=True)
class SegmentationConfig:
    """Settings of :func:`segment_coin_cell`; checked when built.

    Attributes
    ----------
    median_size_px : int
        Median filter applied to the volume first (odd, >= 1; 1 switches it off).
    opening_radius_px : int
        Iterations of the 6-connected opening that separates the cathode from partial-volume
        voxels at steel edges (0 switches it off).
    n_classes : int
        Multi-Otsu classes; the top one is steel, the one below it the cathode (>= 3).
    pore_fraction : float
        Gas: voxels below this fraction of the electrolyte's μ (0-1).
    min_component_voxels : int
        Steel components smaller than this are not taken for the spacer.
    """

    median_size_px: int = 3
    opening_radius_px: int = 1
    n_classes: int = 3
    pore_fraction: float = 0.5
    min_component_voxels: int = 50

    def __post_init__(self) -> None:
        def integer(key: str, minimum: int) -> int:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"xct.{key}: must be an int >= {minimum}, got {value!r}")
            return value

        if integer("median_size_px", 1) % 2 == 0:
            raise ConfigError(f"xct.median_size_px: must be odd, got {self.median_size_px}")
        integer("opening_radius_px", 0)
        integer("n_classes", 3)
        integer("min_component_voxels", 1)
        if not (isinstance(self.pore_fraction, int | float) and 0 < self.pore_fraction < 1):
            raise ConfigError(f"xct.pore_fraction: must be within (0, 1), got {self.pore_fraction!r}")


@dataclass(frozen=True, eq=False)
class CellSegmentation:
    """Component masks of a coin cell's μ volume.

    Attributes
    ----------
    masks : dict of str to ndarray of bool, shape (n_rows, n_y, n_x)
        ``casing`` (can, cap and wall), ``cathode`` (its envelope, pores included),
        ``separator``, ``anode``, ``spacer``, ``pores`` (gas: bubbles and voids in the
        cathode's layer). Empty where a part was not found.
    thresholds_per_m : tuple of float
        Multi-Otsu thresholds, 1/m (cathode above the first, steel above the last).
    anode_threshold_per_m : float
        Threshold between the Li anode and gas, 1/m (NaN when there is no anode layer).
    electrolyte_per_m : float
        μ of the electrolyte beside the cathode, 1/m (NaN when there is none).
    """

    masks: dict[str, np.ndarray]
    thresholds_per_m: tuple[float, ...]
    anode_threshold_per_m: float = math.nan
    electrolyte_per_m: float = math.nan
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)


def _largest_component(mask: np.ndarray, structure: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    labels, n = ndimage.label(mask, structure)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    if exclude is not None:
        sizes[np.unique(labels[exclude])] = 0
    return labels == int(sizes.argmax()) if sizes.max() > 0 else np.zeros_like(mask)


def _row_span(mask: np.ndarray) -> tuple[int, int] | None:
    rows = np.flatnonzero(mask.any(axis=(1, 2)))
    return (int(rows[0]), int(rows[-1])) if rows.size else None


def segment_coin_cell(volume_per_m: np.ndarray, config: SegmentationConfig | None = None) -> CellSegmentation:
    """Label a coin cell's reconstructed μ volume into its components.

    Steps: median filter; multi-Otsu classes (steel at the top, the cathode's oxide next,
    then electrolyte, Li and gas together); the casing is the largest steel component (can,
    cap and wall are one piece) and the spacer the largest other one; the cathode is the
    largest component of the cathode class after a morphological opening (which strips the
    partial-volume shell round steel edges), with its in-plane holes filled. The rest follows
    the stack's order along the cell's axis (axis 0, either way up): between the cathode and
    the spacer lie the 20 µm separator, thinner than a voxel, so given the first row next to
    the cathode, and the Li anode, told from gas by an Otsu threshold of those rows. Pores
    are gas voxels (below ``pore_fraction`` of the electrolyte's μ) in the cathode's rows
    inside the can.

    Parameters
    ----------
    volume_per_m : ndarray of float, shape (n_rows, n_y, n_x)
        μ, 1/m (see :func:`reconstruct`), rows along the cell's axis.
    config : SegmentationConfig, optional

    Returns
    -------
    CellSegmentation
    """
    config = config if config is not None else SegmentationConfig()
    volume = np.asarray(volume_per_m, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume_per_m must have shape (n_rows, n_y, n_x), got {volume.shape}")
    if not np.all(np.isfinite(volume)):
        raise ValueError("volume_per_m holds non-finite values")
    smooth = ndimage.median_filter(volume, size=config.median_size_px) if config.median_size_px > 1 else volume
    thresholds = threshold_multiotsu(smooth, classes=config.n_classes)
    faces = ndimage.generate_binary_structure(3, 1)
    steel = smooth > thresholds[-1]
    casing = _largest_component(steel, faces)
    spacer = _largest_component(steel & ~casing, faces)
    if spacer.sum() < config.min_component_voxels:
        spacer = np.zeros_like(steel)
    oxide = (smooth > thresholds[-2]) & ~steel
    if config.opening_radius_px:
        oxide = ndimage.binary_opening(oxide, faces, iterations=config.opening_radius_px)
    cathode = _largest_component(oxide, faces)
    cathode = np.stack([ndimage.binary_fill_holes(plane) for plane in cathode])
    # inside the can: the casing's footprint, less a voxel of wall
    footprint = ndimage.binary_erosion(ndimage.binary_fill_holes(casing.any(axis=0)), iterations=1)
    inside = footprint[None] & ~casing
    masks = {name: np.zeros_like(steel) for name in COMPONENTS}
    masks.update(casing=casing, cathode=cathode, spacer=spacer)
    result_rows: dict[str, tuple[int, int]] = {}
    cathode_rows, spacer_rows = _row_span(cathode), _row_span(spacer)
    anode_threshold = electrolyte = math.nan
    if cathode_rows is not None:
        result_rows["cathode"] = cathode_rows
        layer = np.zeros_like(steel)
        layer[cathode_rows[0] : cathode_rows[1] + 1] = True
        beside = layer & inside & ~cathode & ~steel & (smooth <= thresholds[-2])
        if beside.any():
            electrolyte = float(np.median(smooth[beside]))
            masks["pores"] = beside & (smooth < config.pore_fraction * electrolyte)
    if cathode_rows is not None and spacer_rows is not None:
        result_rows["spacer"] = spacer_rows
        if spacer_rows[0] > cathode_rows[1]:
            between = range(cathode_rows[1] + 1, spacer_rows[0])
        else:
            between = range(cathode_rows[0] - 1, spacer_rows[1], -1)  # from the cathode outwards
        # rows partly in the spacer's face (a partial-volume shell) are neither Li nor gas
        between = [row for row in between if np.median(smooth[row][inside[row]]) <= thresholds[0]]
        if between:
            separator_row, anode_rows = between[0], between[1:] or between[:1]
            masks["separator"][separator_row] = inside[separator_row] & ~steel[separator_row]
            region = np.zeros_like(steel)
            # Li and gas only: partial-volume voxels of the spacer's face would take Otsu's split
            region[anode_rows] = inside[anode_rows] & (smooth[anode_rows] <= thresholds[0])
            # the top 5 % (partial volume at the can's wall) would pull Otsu's split off the Li/gas gap
            values = smooth[region]
            values = values[values <= np.percentile(values, 95)] if values.size else values
            if values.size > 1 and values.min() < values.max():
                anode_threshold = float(threshold_multiotsu(values, classes=2)[0])
                masks["anode"] = _largest_component(region & (smooth > anode_threshold), faces)
            result_rows["separator"] = (separator_row, separator_row)
            result_rows["anode"] = (min(anode_rows), max(anode_rows))
    return CellSegmentation(
        masks=masks,
        thresholds_per_m=tuple(float(t) for t in thresholds),
        anode_threshold_per_m=anode_threshold,
        electrolyte_per_m=electrolyte,
        rows=result_rows,
    )


# -- XCS grid ----------------------------------------------------------------------------------


def mask_on_xcs_grid(
    mask: np.ndarray,
    *,
    voxel_z_m: float,
    z_centre_m: float,
    thickness_m: float,
    n_pixels: int = 80,
    z_origin_m: float = 0.0,
) -> np.ndarray:
    """Fraction of the sheet-lit volume under each HEXITEC pixel that lies in ``mask``.

    The XCS sheet beam (``thickness_m`` thick, centred at height ``z_centre_m``) crosses the
    cell horizontally, and the pinhole images it 1:1 onto the 80 × 80 pixels, each seeing the
    column of voxels below it (as ``simulators.xcs.sheet_column_atoms`` models it; the
    pinhole's inversion is left out here too). Each pixel's value is the mask averaged over
    its block of voxels, rows weighted by their overlap with the sheet.

    Parameters
    ----------
    mask : ndarray of bool or float, shape (n_rows, n_xy, n_xy)
        Component mask (or fraction) on the XCT grid, rows along the cell's axis.
    voxel_z_m : float
        Row height, m.
    z_centre_m, thickness_m : float
        Height of the sheet's centre and its thickness, m.
    n_pixels : int
        Detector pixels across; ``n_xy`` must be a multiple of it.
    z_origin_m : float
        Height of row 0's lower face, m.

    Returns
    -------
    ndarray of float64, shape (n_pixels, n_pixels)
        0-1; ``>= 0.5`` gives a boolean mask on the XCS grid.
    """
    volume = np.asarray(mask, dtype=np.float64)
    if volume.ndim != 3 or volume.shape[1] != volume.shape[2]:
        raise ValueError(f"mask must have shape (n_rows, n_xy, n_xy), got {volume.shape}")
    if n_pixels < 1 or volume.shape[1] % n_pixels:
        raise ValueError(f"mask width {volume.shape[1]} must be a multiple of n_pixels={n_pixels}")
    if voxel_z_m <= 0 or thickness_m <= 0:
        raise ValueError(f"voxel_z_m and thickness_m must be > 0, got {voxel_z_m}, {thickness_m}")
    lower = z_origin_m + np.arange(volume.shape[0]) * voxel_z_m
    top, bottom = z_centre_m + thickness_m / 2, z_centre_m - thickness_m / 2
    overlap = np.clip(np.minimum(lower + voxel_z_m, top) - np.maximum(lower, bottom), 0, None)
    if overlap.sum() == 0:
        raise ValueError(f"the sheet at {z_centre_m} m does not cross the volume")
    column = np.tensordot(overlap / overlap.sum(), volume, axes=(0, 0))
    k = volume.shape[1] // n_pixels
    return column.reshape(n_pixels, k, n_pixels, k).mean(axis=(1, 3))
