"""XCT half of the live XCS-CT analysis: one scan's camera frames in, μ volume and masks out.

- :class:`XctScanReducer`: the state of one XCT scan while its frames arrive: darks and flats
  summed, each projection turned into its absorbance image on arrival (one float32 image
  per projection is all that is kept, not the raw frames).
- :class:`XctResult`: the reconstruction, the segmentation and the geometry needed to put
  a mask on the XCS grid (:meth:`XctResult.mask_on_xcs_grid`).
- :func:`reduce_scan`: ring removal, filtered back-projection and segmentation of a reduced
  scan (the pure functions of :mod:`streaming.processing.xct` and
  :mod:`streaming.processing.segmentation`, nothing else).
- :func:`write_xct`: ``/entry/xct`` of the sidecar file.

Frames of the ``pco`` stream carry the indices ``scan``, ``image_type`` (0 dark, 1 flat,
2 projection) and ``projection``, and the rotation readback in degrees (``plans.xct``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import h5py
import numpy as np

from streaming.processing.rings import covers_full_turn, fill_missing_projections, remove_rings
from streaming.processing.segmentation import SegmentationConfig, mask_on_xcs_grid, segment_coin_cell
from streaming.processing.xct import absorbance, reconstruct
from streaming.wire.protocol import Frame

__all__ = ["DARK", "FLAT", "PROJECTION", "XctResult", "XctScanReducer", "reduce_scan", "write_xct"]

logger = logging.getLogger(__name__)

DARK, FLAT, PROJECTION = 0, 1, 2  # the ``image_type`` index of plans.xct


class XctScanReducer:
    """Darks, flats and absorbance images of one XCT scan, as its frames arrive.

    Parameters
    ----------
    scan : int
        The ``scan`` index of its frames.

    Darks and flats come first in a scan (``plans.xct``): each projection is flat/dark
    corrected and ``-log``-ed when it arrives, so memory holds one float32 image per
    projection. A projection that arrives before any flat cannot be corrected and is counted
    in :attr:`skipped`.
    """

    def __init__(self, scan: int) -> None:
        self.scan = scan
        self._dark_sum: np.ndarray | None = None
        self._flat_sum: np.ndarray | None = None
        self.n_darks = self.n_flats = self.skipped = 0
        self._absorbance: dict[int, np.ndarray] = {}  # projection index -> (n_rows, n_cols)
        self._theta_rad: dict[int, float] = {}
        self._time_s: list[float] = []
        self._attempts: dict[int, int] = {}  # per image type, the latest attempt seen

    @property
    def n_projections(self) -> int:
        return len(self._absorbance)

    def add(self, frame: Frame) -> None:
        """One ``pco`` frame of this scan (placed by its indices, never by arrival order); the
        darks or flats of an acquisition taken again (index ``attempt``) replace the earlier ones."""
        kind = frame.header.indices.get("image_type", PROJECTION)
        attempt = frame.header.indices.get("attempt", 0)
        if attempt < self._attempts.get(kind, 0):
            return  # superseded
        if attempt > self._attempts.get(kind, 0):
            self._attempts[kind] = attempt
            if kind == DARK:
                self._dark_sum, self.n_darks = None, 0
            elif kind == FLAT:
                self._flat_sum, self.n_flats = None, 0
        image = np.asarray(frame.data, dtype=np.float64)
        if kind == DARK:
            self._dark_sum = image.copy() if self._dark_sum is None else self._dark_sum + image
            self.n_darks += 1
        elif kind == FLAT:
            self._flat_sum = image.copy() if self._flat_sum is None else self._flat_sum + image
            self.n_flats += 1
        elif self._flat_sum is None:
            self.skipped += 1
        else:
            index = frame.header.indices.get("projection", frame.header.indices.get("frame", self.n_projections))
            dark = self._dark_sum / self.n_darks if self.n_darks else np.zeros_like(image)
            self._absorbance[index] = absorbance(frame.data[None], self._flat_sum / self.n_flats, dark)[0]
            self._theta_rad[index] = np.radians(frame.header.positions["rotation"])
            self._time_s.append(frame.header.timestamp)

    def sinograms(self) -> tuple[np.ndarray, np.ndarray]:
        """Absorbance stack (n_angles, n_rows, n_cols) float32 and angles (rad), by projection index."""
        order = sorted(self._absorbance)
        return np.stack([self._absorbance[i] for i in order]), np.array([self._theta_rad[i] for i in order])

    def on_grid(self, n_projections: int, angle_range_deg: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, int]:
        """The scan on its planned grid of ``n_projections`` angles over ``angle_range_deg``
        (as ``plans.xct`` spreads them), the projections that never arrived interpolated
        (:func:`~streaming.processing.rings.fill_missing_projections`): absorbance stack,
        angles (rad), and how many were interpolated."""
        first, last = angle_range_deg
        theta_rad = np.radians(np.linspace(first, last, n_projections, endpoint=False))
        present = np.zeros(n_projections, bool)
        stack = np.zeros((n_projections, *next(iter(self._absorbance.values())).shape), np.float32)
        for index, image in self._absorbance.items():
            if 0 <= index < n_projections:
                stack[index], present[index] = image, True
        full_turn = abs(abs(last - first) - 360.0) < 1e-6
        return fill_missing_projections(stack, present, full_turn=full_turn), theta_rad, int((~present).sum())

    @property
    def mean_time_s(self) -> float:
        """Mean projection time stamp, s since the epoch."""
        return float(np.mean(self._time_s)) if self._time_s else float("nan")


@dataclass(frozen=True, eq=False)
class XctResult:
    """A reduced XCT scan.

    Attributes
    ----------
    scan : int
    time_s : float
        Mean projection time, s since the epoch.
    volume_per_m : ndarray of float32, shape (n_rows, n_y, n_x)
        μ, 1/m, rows along the cell's axis.
    masks : dict of str to ndarray of bool, shape (n_rows, n_y, n_x)
        :data:`~streaming.processing.segmentation.COMPONENTS`.
    thresholds_per_m : tuple of float
    row_height_m, z_origin_m : float
        Height of a volume row, and of row 0's lower face above the stage's zero, m.
    n_projections : int
        Projections that arrived (and were flat-field corrected).
    n_interpolated : int
        Projections of the planned grid that never arrived, interpolated from their neighbours.
    ring_removal : str
        The ring removal used.
    cathode_voxels : int
        Voxels of the cathode mask (kept when the volume and masks are let go: :meth:`summary`).
    """

    scan: int
    time_s: float
    volume_per_m: np.ndarray
    masks: dict[str, np.ndarray]
    thresholds_per_m: tuple[float, ...]
    row_height_m: float
    z_origin_m: float
    n_projections: int
    n_interpolated: int = 0
    ring_removal: str = "off"
    cathode_voxels: int = 0

    def summary(self) -> XctResult:
        """This scan without its volume and masks: what a run keeps of every scan but the
        latest (a volume is MBs to GBs; a run has hundreds of scans)."""
        return replace(self, volume_per_m=np.zeros((0, 0, 0), np.float32), masks={})

    def mask_on_xcs_grid(self, component: str, *, z_centre_m: float, thickness_m: float) -> np.ndarray:
        """Fraction (80, 80) of the sheet at ``z_centre_m`` that lies in ``component``."""
        return mask_on_xcs_grid(self.masks[component], voxel_z_m=self.row_height_m, z_centre_m=z_centre_m,
                                thickness_m=thickness_m, z_origin_m=self.z_origin_m)  # fmt: skip


def reduce_scan(
    reducer: XctScanReducer,
    *,
    ring_removal: str,
    filter_name: str,
    center_px: float | None,
    pixel_size_m: float,
    row_height_m: float,
    z_origin_m: float,
    n_pixels: int,
    segmentation: SegmentationConfig,
    planned: tuple[int, tuple[float, float]] | None = None,
) -> XctResult:
    """Rings removed (``ring_removal``: ``"mirror"``, ``"median"`` or ``"off"``), FBP, segmentation.

    ``planned``: the scan's ``(n_projections, angle_range_deg)``; the projections missing from
    it are interpolated first (:meth:`XctScanReducer.on_grid`). ``"mirror"`` needs a whole turn
    of evenly spread angles: without them (no plan, or not a full turn) ``"median"`` is used,
    and the result says so."""
    n_interpolated = 0
    if planned is not None:
        sinograms, theta_rad, n_interpolated = reducer.on_grid(*planned)
    else:
        sinograms, theta_rad = reducer.sinograms()
    if ring_removal == "mirror" and not covers_full_turn(theta_rad):
        logger.warning("XCT scan %d: angles not evenly spread over a whole turn: rings removed by 'median'",
                       reducer.scan)  # fmt: skip
        ring_removal = "median"
    if ring_removal != "off":
        sinograms = remove_rings(sinograms, theta_rad, center_px=center_px, method=ring_removal)
    volume = reconstruct(sinograms, theta_rad, center_px=center_px, n_pixels=n_pixels, pixel_size_m=pixel_size_m,
                         filter_name=filter_name)  # fmt: skip
    cell = segment_coin_cell(volume, segmentation)
    return XctResult(reducer.scan, reducer.mean_time_s, volume, cell.masks, cell.thresholds_per_m, row_height_m,
                     z_origin_m, reducer.n_projections, n_interpolated, ring_removal,
                     int(cell.masks["cathode"].sum()) if "cathode" in cell.masks else 0)  # fmt: skip


def write_xct(entry: h5py.Group, results: list[XctResult], attrs: dict[str, object]) -> None:
    """``/entry/xct``: the latest scan's ``reconstruction`` (1, n_rows, n_y, n_x) μ in 1/m and
    ``masks/<component>``; per scan ``scan``, ``time`` and ``cathode_volume_m3``; every
    reduction parameter as an attribute. Earlier volumes are not kept (a full-size volume is
    GBs); they can be rebuilt from the run file by replay."""
    group = entry.create_group("xct")
    group.attrs["NX_class"] = "NXprocess"
    for key, value in attrs.items():
        group.attrs[key] = "none" if value is None else value
    group.create_dataset("scan", data=np.array([r.scan for r in results], np.int64))
    group.create_dataset("time", data=np.array([r.time_s for r in results]), dtype=np.float64).attrs["units"] = "s"
    voxel_m3 = [r.row_height_m * attrs["pixel_size_m"] ** 2 for r in results]
    cathode = np.array([r.cathode_voxels * v for r, v in zip(results, voxel_m3, strict=True)])
    group.create_dataset("cathode_volume_m3", data=cathode).attrs["units"] = "m^3"
    # what each scan was made from
    group.create_dataset("projections_received", data=np.array([r.n_projections for r in results], np.int64))
    group.create_dataset("projections_interpolated", data=np.array([r.n_interpolated for r in results], np.int64))
    if not results:
        return
    latest = results[-1]
    data = group.create_dataset("reconstruction", data=latest.volume_per_m[None], compression="gzip",
                                chunks=(1, 1, *latest.volume_per_m.shape[1:]))  # fmt: skip
    data.attrs.update(units="1/m", scan=latest.scan, axes="scan,z,y,x")
    masks = group.create_group("masks")
    for name, mask in latest.masks.items():
        masks.create_dataset(name, data=mask, compression="gzip")
    group.attrs["thresholds_per_m"] = np.array(latest.thresholds_per_m)
    group.attrs["n_projections"] = latest.n_projections
