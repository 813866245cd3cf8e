"""The azimuthal reducer: a pixel-to-bin table built from pyFAI, and the reduction of a frame over it.

- :class:`IntegrationResult`: per-bin intensity, pixel count and the kept sums.
- :class:`AzimuthalReducer`: built once from a pyFAI geometry (PONI file or integrator),
  a mask and a config; :meth:`AzimuthalReducer.integrate` reduces one frame.
- :func:`pixel_scan_order`: the table's entries in pixel order.
- :func:`reduce_frame`: the same reduction as a pure function of arrays.

The methods, ties and references are in the package docstring (:mod:`streaming.processing.integration`);
the per-frame work is in :mod:`._kernels`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from os import PathLike

import numpy as np

from ._kernels import _kernel_reduce, _kernel_scatter
from .config import _METHOD_CODES, IntegrationConfig

__all__ = ["AzimuthalReducer", "IntegrationResult", "pixel_scan_order", "reduce_frame"]


@dataclass(frozen=True)
class IntegrationResult:
    """One reduced frame.

    Attributes
    ----------
    radial_deg : ndarray of float, shape (n_radial,)
        Bin centres, 2θ in degrees.
    intensity : ndarray of float64, shape (n_radial,)
        ``sum_signal / sum_normalization`` (``empty`` where no pixel was kept).
    count : ndarray of int64, shape (n_radial,)
        Pixels kept in each bin.
    sum_signal, sum_normalization : ndarray of float64, shape (n_radial,)
        Sums of signal and normalisation over the kept pixels.
    """

    radial_deg: np.ndarray
    intensity: np.ndarray
    count: np.ndarray
    sum_signal: np.ndarray
    sum_normalization: np.ndarray


class AzimuthalReducer:
    """Reduce frames to 1D patterns over a fixed pixel-to-bin table.

    Build it with :meth:`from_poni` or :meth:`from_integrator`; the geometry, mask and
    corrections are fixed for its lifetime (build a new one to change them). It holds no
    per-frame state, so one reducer may serve several threads.

    Parameters
    ----------
    indptr : ndarray of int, shape (n_radial + 1,)
        CSR row pointers: bin ``b`` holds entries ``indptr[b]:indptr[b + 1]``.
    pixel_index : ndarray of int, shape (nnz,)
        Flat pixel index of each entry.
    normalization : ndarray of float32, shape (nnz,)
        Per-entry normalisation (flat · solid angle · polarisation), > 0.
    dark : ndarray of float32, shape (nnz,), or None
        Per-entry dark signal subtracted from the raw value.
    radial_deg : ndarray of float, shape (n_radial,)
        Bin centres, degrees.
    shape : (int, int)
        Frame shape.
    config : IntegrationConfig
    """

    def __init__(
        self,
        *,
        indptr: np.ndarray,
        pixel_index: np.ndarray,
        normalization: np.ndarray,
        dark: np.ndarray | None,
        radial_deg: np.ndarray,
        shape: tuple[int, int],
        config: IntegrationConfig,
    ):
        self.config = config
        self.shape = tuple(int(s) for s in shape)
        self._indptr = _readonly(np.asarray(indptr, dtype=np.int64))
        self._pixel_index = _readonly(np.asarray(pixel_index, dtype=np.int32))
        self._normalization = _readonly(np.asarray(normalization, dtype=np.float32))
        self._dark = None if dark is None else _readonly(np.asarray(dark, dtype=np.float32))
        self._radial_deg = _readonly(np.asarray(radial_deg, dtype=np.float64))
        n_bins = self._indptr.size - 1
        if n_bins != config.n_radial or self._radial_deg.shape != (n_bins,):
            raise ValueError(
                f"table has {n_bins} bins and {self._radial_deg.size} centres, config wants {config.n_radial}"
            )
        if self._pixel_index.shape != self._normalization.shape or self._indptr[-1] != self._pixel_index.size:
            raise ValueError("pixel_index, normalization and indptr disagree in size")
        if self._dark is not None and self._dark.shape != self._normalization.shape:
            raise ValueError("dark must have one value per table entry")
        if self._pixel_index.size and (
            self._pixel_index.min() < 0 or self._pixel_index.max() >= self.shape[0] * self.shape[1]
        ):
            raise ValueError(f"pixel_index out of range for frame shape {self.shape}")
        if not np.all(self._normalization > 0):
            raise ValueError("normalization must be > 0 (drop zero-weight pixels from the table)")
        self._scan_order = tuple(_readonly(a) for a in pixel_scan_order(self._pixel_index))
        # the dark in scan order, once (a per-frame gather of it cost 8.5 ms per Pilatus2M frame)
        self._scan_dark = None if self._dark is None else _readonly(self._dark[self._scan_order[1]])
        self._scratch = threading.local()  # per-thread bin-ordered values, reused frame to frame

    # -- construction from pyFAI --------------------------------------------------------------

    @classmethod
    def from_poni(
        cls,
        poni_path: str | PathLike,
        shape: tuple[int, int] | None,
        mask: np.ndarray | None,
        config: IntegrationConfig,
        *,
        flat: np.ndarray | None = None,
        dark: np.ndarray | None = None,
    ) -> AzimuthalReducer:
        """Build from a pyFAI PONI file (see :meth:`from_integrator`)."""
        import pyFAI

        return cls.from_integrator(pyFAI.load(str(poni_path)), shape, mask, config, flat=flat, dark=dark)

    @classmethod
    def from_integrator(
        cls,
        integrator,
        shape: tuple[int, int] | None,
        mask: np.ndarray | None,
        config: IntegrationConfig,
        *,
        flat: np.ndarray | None = None,
        dark: np.ndarray | None = None,
    ) -> AzimuthalReducer:
        """Build from a pyFAI ``AzimuthalIntegrator`` (geometry and detector).

        Parameters
        ----------
        integrator : pyFAI.integrator.azimuthal.AzimuthalIntegrator
        shape : (int, int) or None
            Frame shape; None for the detector's.
        mask : ndarray of bool, shape ``shape``, or None
            True (non-zero) where pixels are excluded, pyFAI's convention; None for the
            detector's own mask (gaps).
        config : IntegrationConfig
        flat : ndarray of float, shape ``shape``, or None
            Flat field (the normalisation is multiplied by it); pixels with flat <= 0 are
            excluded.
        dark : ndarray of float, shape ``shape``, or None
            Dark signal subtracted from each raw value.

        Raises
        ------
        ValueError
            A mask, flat or dark of the wrong shape, or a geometry that leaves no pixel.
        """
        shape = tuple(int(s) for s in (shape or integrator.detector.shape))
        if mask is None:
            mask = integrator.detector.mask
        mask = np.zeros(shape, dtype=bool) if mask is None else np.asarray(mask).astype(bool)
        for name, array in (("mask", mask), ("flat", flat), ("dark", dark)):
            if array is not None and np.shape(array) != shape:
                raise ValueError(f"{name} has shape {np.shape(array)}, frames have {shape}")
        radial_range_rad = None
        if config.radial_range_deg is not None:
            radial_range_rad = tuple(math.radians(v) for v in config.radial_range_deg)
        engine = integrator.setup_sparse_integrator(
            shape, config.n_radial, mask=mask.astype(np.int8), pos0_range=radial_range_rad,
            unit=config.unit, split="no", algo="CSR", empty=config.empty, scale=False,
        )  # fmt: skip
        coefficients, pixel_index, indptr = (np.asarray(a) for a in engine.lut)
        if not np.all(coefficients == 1):
            raise ValueError("expected a table without pixel splitting (all coefficients 1)")
        # normalisation in float32, in pyFAI's preprocessing order
        normalization = np.ones(shape, dtype=np.float32)
        if flat is not None:
            normalization *= np.asarray(flat, dtype=np.float32)
        if config.solid_angle:
            normalization *= integrator.solidAngleArray(shape, True).astype(np.float32)
        if config.polarization_factor is not None:
            normalization *= integrator.polarization(shape, config.polarization_factor).astype(np.float32)
        entry_norm = normalization.reshape(-1)[pixel_index]
        keep = np.isfinite(entry_norm) & (entry_norm > 0)  # pyFAI skips zero-weight pixels
        if not keep.all():
            row_of_entry = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
            indptr = np.concatenate(([0], np.cumsum(np.bincount(row_of_entry[keep], minlength=indptr.size - 1))))
            pixel_index, entry_norm = pixel_index[keep], entry_norm[keep]
        if pixel_index.size == 0:
            raise ValueError("no unmasked pixel falls into the radial range")
        entry_dark = None if dark is None else np.asarray(dark, dtype=np.float32).reshape(-1)[pixel_index]
        return cls(
            indptr=indptr, pixel_index=pixel_index, normalization=entry_norm, dark=entry_dark,
            radial_deg=np.degrees(np.asarray(engine.bin_centers, dtype=np.float64)), shape=shape, config=config,
        )  # fmt: skip

    # -- per frame -----------------------------------------------------------------------------

    @property
    def radial_deg(self) -> np.ndarray:
        """Bin centres, 2θ in degrees, shape (n_radial,) (read-only)."""
        return self._radial_deg

    @property
    def pixels_per_bin(self) -> np.ndarray:
        """Unmasked pixels in each bin, shape (n_radial,)."""
        return np.diff(self._indptr)

    def integrate(self, frame: np.ndarray) -> np.ndarray:
        """Reduce one frame to its 1D pattern.

        Parameters
        ----------
        frame : ndarray of int or float, shape ``shape``
            Raw counts (int32 with -1 in gaps from the Pilatus) or floats.

        Returns
        -------
        ndarray of float64, shape (n_radial,)
            Intensity per radial bin (``config.empty`` where no pixel was kept).
        """
        return self.integrate_full(frame).intensity

    def integrate_full(self, frame: np.ndarray) -> IntegrationResult:
        """:meth:`integrate` with the per-bin count and kept sums."""
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"frame has shape {frame.shape}, the reducer expects {self.shape}")
        if frame.dtype.kind not in "iuf":
            raise TypeError(f"frame dtype must be integer or float, got {frame.dtype}")
        values = getattr(self._scratch, "values", None)
        if values is None:
            values = self._scratch.values = np.empty(self._pixel_index.size, np.float32)
        return reduce_frame(
            frame,
            indptr=self._indptr,
            pixel_index=self._pixel_index,
            normalization=self._normalization,
            dark=self._dark,
            radial_deg=self._radial_deg,
            config=self.config,
            scan_order=self._scan_order,
            scan_dark=self._scan_dark,
            values=values,
        )


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)  # private copy: callers keep theirs
    array.flags.writeable = False
    return array


def pixel_scan_order(pixel_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table's entries in pixel order: ``(scan_pixels, scan_destination)``, int32.

    ``scan_pixels`` is ``pixel_index`` sorted (each pixel is in one bin at most, without
    splitting) and ``scan_destination[k]`` the table entry of ``scan_pixels[k]``.
    """
    destination = np.argsort(pixel_index, kind="stable")
    return np.asarray(pixel_index)[destination].astype(np.int32), destination.astype(np.int32)


def reduce_frame(
    frame: np.ndarray,
    *,
    indptr: np.ndarray,
    pixel_index: np.ndarray,
    normalization: np.ndarray,
    dark: np.ndarray | None,
    radial_deg: np.ndarray,
    config: IntegrationConfig,
    scan_order: tuple[np.ndarray, np.ndarray] | None = None,
    scan_dark: np.ndarray | None = None,
    values: np.ndarray | None = None,
) -> IntegrationResult:
    """Reduce one frame over a CSR pixel-to-bin table (see :class:`AzimuthalReducer`).

    Parameters
    ----------
    frame : ndarray of int or float, any shape
        Read flat; ``pixel_index`` indexes it.
    indptr : ndarray of int64, shape (n_radial + 1,)
    pixel_index : ndarray of int32, shape (nnz,)
    normalization : ndarray of float32, shape (nnz,)
    dark : ndarray of float32, shape (nnz,), or None
    radial_deg : ndarray of float, shape (n_radial,)
    config : IntegrationConfig
    scan_order : (ndarray, ndarray) or None
        :func:`pixel_scan_order` of ``pixel_index``, computed when None (an argsort: pass
        it when reducing many frames).
    scan_dark : ndarray of float32, shape (nnz,), or None
        ``dark`` in scan order (``dark[scan_order[1]]``), computed when None.
    values : ndarray of float32, shape (nnz,), or None
        Scratch for the bin-ordered values, allocated when None.

    Raises
    ------
    ValueError
        ``scan_order``, ``scan_dark`` or ``values`` not of the table's size (the kernels do
        not check bounds).

    Returns
    -------
    IntegrationResult
    """
    flat_frame = np.ascontiguousarray(frame).reshape(-1)
    scan_pixels, scan_destination = pixel_scan_order(pixel_index) if scan_order is None else scan_order
    nnz = pixel_index.size
    if values is None:
        values = np.empty(nnz, np.float32)
    if scan_dark is None:
        scan_dark = np.zeros(0, np.float32) if dark is None else np.asarray(dark, np.float32)[scan_destination]
    if scan_pixels.size != nnz or scan_destination.size != nnz or (dark is not None and scan_dark.size != nnz):
        raise ValueError(f"scan_order and scan_dark must have the table's {nnz} entries")
    if values.shape != (nnz,) or values.dtype != np.float32 or not values.flags.writeable:
        raise ValueError(f"values must be a writeable float32 array of shape ({nnz},)")
    _kernel_scatter(flat_frame, scan_pixels, scan_destination, scan_dark, dark is not None, config.mask_negative,
                    values)  # fmt: skip
    n_bins = indptr.size - 1
    intensity = np.empty(n_bins, np.float64)
    count = np.empty(n_bins, np.int64)
    sum_signal = np.empty(n_bins, np.float64)
    sum_norm = np.empty(n_bins, np.float64)
    low, high = config.percentiles
    _kernel_reduce(
        values, indptr, normalization, _METHOD_CODES[config.method], low / 100.0, high / 100.0,
        float(config.sigma_clip_threshold), int(config.sigma_clip_max_iter), float(config.empty),
        intensity, count, sum_signal, sum_norm,
    )  # fmt: skip
    return IntegrationResult(np.asarray(radial_deg), intensity, count, sum_signal, sum_norm)
