"""Trimmed-mean azimuthal reduction on a CUDA GPU (CuPy), an optional backend.

The same reduction as :func:`streaming.processing.integration.reduce_frame` with
``method="trimmed_mean"`` (pyFAI's rule for ``medfilt1d_ng``: order each bin's pixels by
signal/normalisation, keep a pixel when its whole cumulative-weight interval lies within
``[q_lo W, q_hi W]``), written as whole-array operations: one 64-bit radix sort of
(bin, key) over every pixel of the frame, a cumulative sum of the weights in that order, and
two per-bin sums of the kept pixels. Nothing loops over bins, so a full Pilatus frame costs a
few sorts of 2.3 M elements.

Ties (pixels of equal signal/normalisation, e.g. zero counts) keep their CSR order here; pyFAI's
unstable sort may order them otherwise, as on the CPU backend.

CuPy is not a dependency: :class:`GpuTrimmedMean` imports it when built and raises
``ImportError`` without it. With ``xp=numpy`` the same code runs on the CPU (the tests check it
there against the numba backend; it is not fast there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GpuTrimmedMean"]


class GpuTrimmedMean:
    """A CSR pixel-to-bin table on the GPU and the trimmed mean over it.

    Parameters
    ----------
    indptr : ndarray of int, shape (n_bins + 1,)
    pixel_index : ndarray of int, shape (nnz,)
        Flat frame index of each CSR entry.
    normalization : ndarray of float, shape (nnz,)
        Per-entry normalisation (solid angle x polarisation ...), the pixel's weight.
    percentiles : (float, float)
        Kept range, percent of each bin's total weight.
    empty : float
        Value of bins with no kept pixel.
    xp : module, optional
        The array module: ``cupy`` (default) or ``numpy``.
    """

    def __init__(
        self,
        indptr: np.ndarray,
        pixel_index: np.ndarray,
        normalization: np.ndarray,
        *,
        percentiles: tuple[float, float] = (5.0, 95.0),
        empty: float = 0.0,
        xp: Any = None,
    ) -> None:
        if xp is None:
            import cupy as xp
        low, high = percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        self._xp = xp
        cupy = xp
        self.n_bins = len(indptr) - 1
        self.q_lo, self.q_hi = low / 100.0, high / 100.0
        self.empty = empty
        counts = np.diff(np.asarray(indptr, np.int64))
        bins = np.repeat(np.arange(self.n_bins, dtype=np.uint64), counts)
        self._bin_high = cupy.asarray(bins << np.uint64(32))  # the bin in the sort key's upper half
        self._bin = cupy.asarray(bins.astype(np.int32))
        self._pixel_index = cupy.asarray(np.asarray(pixel_index, np.int64))
        self._normalization = cupy.asarray(np.asarray(normalization, np.float32))

    def integrate(self, frame: Any) -> np.ndarray:
        """Trimmed mean per bin (float64, on the host) of one frame (host or device array;
        negative values, the detector's gaps, are left out)."""
        cp = self._xp
        flat = cp.asarray(frame).reshape(-1)
        signal = flat[self._pixel_index].astype(cp.float32)
        valid = signal >= 0
        weight = cp.where(valid, self._normalization, cp.float32(0))
        key = signal / self._normalization
        bits = key.view(cp.uint32)
        # float32 -> unsigned order (negatives reversed); invalid pixels sort last in their bin
        ordered = cp.where(bits & cp.uint32(0x80000000), ~bits, bits | cp.uint32(0x80000000))
        ordered = cp.where(valid, ordered, cp.uint32(0xFFFFFFFF)).astype(cp.uint64)
        order = cp.argsort(self._bin_high | ordered, kind="stable")
        w_sorted = weight[order].astype(cp.float64)
        cum_after = cp.cumsum(w_sorted)
        bin_sorted = self._bin[order]
        totals = cp.bincount(bin_sorted, weights=w_sorted, minlength=self.n_bins)
        before_bin = cp.cumsum(totals) - totals  # cumulative weight of all earlier bins
        cum_after -= before_bin[bin_sorted]
        cum_before = cum_after - w_sorted
        total = totals[bin_sorted]
        keep = valid[order] & (cum_before >= self.q_lo * total) & (cum_after <= self.q_hi * total)
        sum_signal = cp.bincount(bin_sorted, weights=cp.where(keep, signal[order], 0.0), minlength=self.n_bins)
        sum_weight = cp.bincount(bin_sorted, weights=cp.where(keep, w_sorted, 0.0), minlength=self.n_bins)
        result = cp.where(sum_weight > 0, sum_signal / cp.where(sum_weight > 0, sum_weight, 1.0), self.empty)
        return result.get() if hasattr(result, "get") else np.asarray(result)
