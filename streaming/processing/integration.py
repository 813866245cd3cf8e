"""Azimuthal integration of area-detector frames: trimmed mean, mean and sigma clipping.

- :class:`IntegrationConfig`: radial bins, reduction method, trim percentiles, corrections.
- :class:`IntegrationResult`: per-bin intensity, pixel count and the kept sums.
- :class:`AzimuthalReducer`: built once from a pyFAI geometry (PONI file or integrator),
  a mask and a config; it owns the pixel-to-bin table and the per-pixel corrections, and
  :meth:`AzimuthalReducer.integrate` reduces one frame to ``(n_radial,)`` intensities.
- :func:`reduce_frame`: the same reduction as a pure function of arrays.

pyFAI is used at set-up only (geometry, pixel-to-bin CSR table without pixel splitting,
solid angle and polarisation arrays); the per-frame work is a numba kernel over plain arrays.
The results equal pyFAI's ``medfilt1d_ng``/``integrate1d_ng``/``sigma_clip_ng`` with
``method=("no", "csr", "cython")`` for the same mask, corrections and percentiles.

Definitions (per radial bin, over its unmasked pixels; signal ``s = raw - dark``, normalisation
``n = flat · solid angle · polarisation``):

- ``"mean"``: ``Σ s / Σ n`` (pyFAI's weighted average).
- ``"trimmed_mean"``: sort the pixels by ``s / n`` and accumulate ``n`` in that order; a pixel
  is kept when its whole share of the cumulative weight lies within the percentiles,
  ``q_lo · W <= cum_before`` and ``cum_after <= q_hi · W`` with ``W = Σ n``; the result is
  ``Σ s / Σ n`` over the kept pixels (pyFAI's quantile mean). The XRD-CT paper's "10 %
  trimmed mean" is ``percentiles=(5, 95)``.
- ``"sigma_clip"``: iteratively drop pixels with ``|s/n - <I>| > k σ``, σ being the weighted
  spread of ``s/n`` in the bin and ``k = max(threshold, sqrt(2 ln(N / sqrt(2π))))``
  (Chauvenet's criterion for a bin of N pixels), as pyFAI's ``sigma_clip_ng`` with
  ``error_model="azimuthal"`` does.

How the trimmed mean stays fast: only the tails need ordering. For each bin a 64-pixel
strided sample of ``s/n`` is sorted to bracket the two cut values with a safety margin;
one pass over the bin then sums every pixel and copies only the tail candidates (about 15 %
of the pixels) into scratch, where a weighted quickselect finds the exact cut. When a
bracket misses (too few candidates by weight; rare, e.g. very textured rings) the bin falls
back to a weighted quickselect over all its pixels, so the result is always exact.

Ties: pixels of equal ``s/n`` on a cut (frequent with raw integer counts, e.g. zeros) may be
ordered differently than pyFAI's unstable sort, so which one is dropped can differ; the
bin's result then differs by about ``1/N`` of the bin mean. On tie-free data the two agree
to rounding.

Frames are read as they come (int32 counts or floats); with ``mask_negative`` (default)
negative values, which Pilatus writes into gaps (-1) and defective pixels (-2), are skipped
in every frame on top of the static mask.

Angles: the radial axis is 2θ in degrees (``radial_deg``), the unit of PONI-based
integration at the beamline; pyFAI works in radians internally.

References
----------
J. Kieffer et al., pyFAI: "Median filter and quantile mean in azimuthal space"
(``AzimuthalIntegrator.medfilt1d_ng``) and "sigma-clipping" (``sigma_clip_ng``), pyFAI 2026.9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike

import numba
import numpy as np

from streaming.errors import ConfigError

__all__ = [
    "INTEGRATION_METHODS",
    "AzimuthalReducer",
    "IntegrationConfig",
    "IntegrationResult",
    "reduce_frame",
]

INTEGRATION_METHODS = ("trimmed_mean", "mean", "sigma_clip")
_METHOD_CODES = {name: code for code, name in enumerate(INTEGRATION_METHODS)}
_UNITS = ("2th_deg",)
_BINS_PER_TASK = 8  # bins per parallel task: small enough to balance unequal bins over threads
_SAMPLE_SIZE = 64  # pixels sampled per bin to bracket the trim cuts
_SAMPLE_MIN_BIN = 4 * _SAMPLE_SIZE  # smaller bins go straight to the exact selection
_SAMPLE_MARGIN = 0.08  # bracket margin in quantile: ~3 sampling σ at 5 % with 64 samples


@dataclass(frozen=True, kw_only=True)
class IntegrationConfig:
    """Settings of the azimuthal reduction; checked when built.

    Attributes
    ----------
    n_radial : int
        Number of radial bins.
    method : {"trimmed_mean", "mean", "sigma_clip"}
    percentiles : (float, float)
        Lower and upper percentiles of pixel weight kept by ``"trimmed_mean"``,
        0 <= low < high <= 100. (5, 95) is the XRD-CT paper's "10 % trimmed mean".
    polarization_factor : float or None
        pyFAI's polarisation factor (-1 .. 1, 0.99 for a horizontally polarised
        synchrotron beam); None for no polarisation correction.
    solid_angle : bool
        Correct for the solid angle of each pixel.
    unit : {"2th_deg"}
        Radial unit (scattering angle 2θ, degrees).
    radial_range_deg : (float, float) or None
        Range covered by the bins, in ``unit``; None for the range of the unmasked pixels.
    sigma_clip_threshold : float
        Clipping threshold k of ``"sigma_clip"`` (in σ), > 0.
    sigma_clip_max_iter : int
        Clipping cycles of ``"sigma_clip"``, >= 0.
    mask_negative : bool
        Skip pixels with negative values in each frame (Pilatus gap/defect markers).
    empty : float
        Value of bins with no kept pixel.
    """

    n_radial: int
    method: str = "trimmed_mean"
    percentiles: tuple[float, float] = (5.0, 95.0)
    polarization_factor: float | None = 0.99
    solid_angle: bool = True
    unit: str = "2th_deg"
    radial_range_deg: tuple[float, float] | None = None
    sigma_clip_threshold: float = 5.0
    sigma_clip_max_iter: int = 5
    mask_negative: bool = True
    empty: float = 0.0

    def __post_init__(self) -> None:
        if not _is_int(self.n_radial) or self.n_radial < 1:
            raise ConfigError(f"integration.n_radial: must be an int >= 1, got {self.n_radial!r}")
        if self.method not in INTEGRATION_METHODS:
            raise ConfigError(
                f"integration.method: must be one of {', '.join(INTEGRATION_METHODS)}, got {self.method!r}"
            )
        try:
            low, high = (float(p) for p in self.percentiles)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"integration.percentiles: must be two numbers, got {self.percentiles!r}") from exc
        if not (0.0 <= low < high <= 100.0):
            raise ConfigError(f"integration.percentiles: need 0 <= low < high <= 100, got {self.percentiles!r}")
        object.__setattr__(self, "percentiles", (low, high))
        factor = self.polarization_factor
        if factor is not None and not (_is_number(factor) and -1.0 <= factor <= 1.0):
            raise ConfigError(f"integration.polarization_factor: must be None or within [-1, 1], got {factor!r}")
        if self.unit not in _UNITS:
            raise ConfigError(f"integration.unit: must be one of {', '.join(_UNITS)}, got {self.unit!r}")
        if self.radial_range_deg is not None:
            try:
                start, stop = (float(v) for v in self.radial_range_deg)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"integration.radial_range_deg: must be None or two numbers, got {self.radial_range_deg!r}"
                ) from exc
            if not (math.isfinite(start) and math.isfinite(stop) and 0.0 <= start < stop):
                raise ConfigError(
                    f"integration.radial_range_deg: need finite 0 <= start < stop, got {self.radial_range_deg!r}"
                )
            object.__setattr__(self, "radial_range_deg", (start, stop))
        if not (_is_number(self.sigma_clip_threshold) and self.sigma_clip_threshold > 0):
            raise ConfigError(f"integration.sigma_clip_threshold: must be > 0, got {self.sigma_clip_threshold!r}")
        if not _is_int(self.sigma_clip_max_iter) or self.sigma_clip_max_iter < 0:
            raise ConfigError(f"integration.sigma_clip_max_iter: must be an int >= 0, got {self.sigma_clip_max_iter!r}")
        if not _is_number(self.empty):
            raise ConfigError(f"integration.empty: must be a number, got {self.empty!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


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
        return reduce_frame(
            frame,
            indptr=self._indptr,
            pixel_index=self._pixel_index,
            normalization=self._normalization,
            dark=self._dark,
            radial_deg=self._radial_deg,
            config=self.config,
        )


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)  # private copy: callers keep theirs
    array.flags.writeable = False
    return array


def reduce_frame(
    frame: np.ndarray,
    *,
    indptr: np.ndarray,
    pixel_index: np.ndarray,
    normalization: np.ndarray,
    dark: np.ndarray | None,
    radial_deg: np.ndarray,
    config: IntegrationConfig,
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

    Returns
    -------
    IntegrationResult
    """
    flat_frame = np.ascontiguousarray(frame).reshape(-1)
    n_bins = indptr.size - 1
    intensity = np.empty(n_bins, np.float64)
    count = np.empty(n_bins, np.int64)
    sum_signal = np.empty(n_bins, np.float64)
    sum_norm = np.empty(n_bins, np.float64)
    dark_entries = np.zeros(0, np.float32) if dark is None else dark
    low, high = config.percentiles
    _kernel_reduce(
        flat_frame, indptr, pixel_index, normalization, dark_entries, dark is not None, config.mask_negative,
        _METHOD_CODES[config.method], low / 100.0, high / 100.0, float(config.sigma_clip_threshold),
        int(config.sigma_clip_max_iter), float(config.empty), intensity, count, sum_signal, sum_norm,
    )  # fmt: skip
    return IntegrationResult(np.asarray(radial_deg), intensity, count, sum_signal, sum_norm)


# -- numba kernels -----------------------------------------------------------------------------
# Scratch per bin: keys (s/n, float32 as pyFAI sorts them), signal and normalisation (float64).


@numba.njit(cache=True, nogil=True)
def _kernel_order_key(bits, descending):  # pragma: no cover
    """uint64 whose unsigned order is the float32 order of the key with IEEE bits ``bits``
    (reversed if descending), in the upper 32 bits."""
    if bits & np.uint32(0x80000000):
        bits = ~bits
    else:
        bits = bits | np.uint32(0x80000000)
    if descending:
        bits = ~bits
    return np.uint64(bits) << np.uint64(32)


@numba.njit(cache=True, nogil=True)
def _kernel_nth_element(packed, start, stop, nth):  # pragma: no cover
    """Rearrange ``packed[start:stop]`` so its ``nth`` smallest come first (Hoare quickselect)."""
    lo = start
    hi = stop - 1
    target = start + nth
    while lo < hi:
        a, b, c = packed[lo], packed[(lo + hi) // 2], packed[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while packed[i] < pivot:
                i += 1
            while packed[j] > pivot:
                j -= 1
            if i <= j:
                packed[i], packed[j] = packed[j], packed[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break


@numba.njit(cache=True, nogil=True)
def _kernel_tail(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    packed, start, stop, sig, nrm, target, w_min, w_max
):  # pragma: no cover
    """Sum the tail of ``packed[start:stop]`` (order keys << 32 | scratch index, smallest
    first): every pixel whose cumulative weight *before* it is below ``target``.

    The tail holds at least ``ceil(target / w_max)`` pixels, all surely excluded: one
    quickselect places them, then the few pixels left to the cut (weights in a bin are
    nearly equal) are picked one minimum at a time. Returns (n_excluded, Σ s, Σ n).
    """
    n = stop - start
    if target <= 0 or n == 0:
        return 0, 0.0, 0.0
    sure = min(n, math.ceil(target / w_max) - 1) if w_max > 0 else 0
    sure = max(sure, 0)
    if math.ceil(target / w_min) - sure > 32:
        packed[start:stop].sort()  # widely spread weights: order the whole tail
    elif sure > 0:
        _kernel_nth_element(packed, start, stop, sure)
    acc_s = 0.0
    acc_w = 0.0
    mask = np.uint64(0xFFFFFFFF)
    for j in range(start, start + sure):
        i = packed[j] & mask
        acc_s += sig[i]
        acc_w += nrm[i]
    j = start + sure
    while acc_w < target and j < stop:
        best = j
        for t in range(j + 1, stop):
            if packed[t] < packed[best]:
                best = t
        packed[j], packed[best] = packed[best], packed[j]
        i = packed[j] & mask
        acc_s += sig[i]
        acc_w += nrm[i]
        j += 1
    return j - start, acc_s, acc_w


@numba.njit(cache=True, nogil=True)
def _kernel_gather_bin(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    frame, pixel_index, normalization, dark, has_dark, mask_negative, start, stop, keys, sig, nrm
):  # pragma: no cover
    """Copy a bin's valid pixels into scratch: key s/n (float32, as pyFAI sorts), s and n.

    Returns (m, Σ s, Σ n). Contiguous stores only: the loads from the frame are the slow part.
    """
    m = 0
    total_s = 0.0
    total_w = 0.0
    for e in range(start, stop):
        raw = frame[pixel_index[e]]
        if mask_negative and raw < 0:
            continue
        s = np.float32(raw) - dark[e] if has_dark else np.float32(raw)
        w = normalization[e]
        keys[m], sig[m], nrm[m] = s / w, s, w
        total_s += s
        total_w += w
        m += 1
    return m, total_s, total_w


@numba.njit(cache=True, nogil=True)
def _kernel_trimmed_bin(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    frame,
    pixel_index,
    normalization,
    dark,
    has_dark,
    mask_negative,
    start,
    stop,
    q_lo,
    q_hi,
    keys,
    sig,
    nrm,
    packed,
    sample,
):  # pragma: no cover
    """Trimmed mean of one bin: returns (count, sum_signal, sum_norm) of the kept pixels."""
    m, total_s, total_w = _kernel_gather_bin(
        frame, pixel_index, normalization, dark, has_dark, mask_negative, start, stop, keys, sig, nrm
    )
    if m == 0:
        return 0, 0.0, 0.0
    w_min = np.inf
    w_max = 0.0
    for i in range(m):
        w_min = min(w_min, nrm[i])
        w_max = max(w_max, nrm[i])
    target_lo = q_lo * total_w
    target_hi = total_w - q_hi * total_w
    key_bits = keys.view(np.uint32)
    if m >= _SAMPLE_MIN_BIN:
        # bracket both cuts from a strided sample of the (cache-resident) keys
        stride = m // _SAMPLE_SIZE
        for j in range(_SAMPLE_SIZE):
            sample[j] = keys[j * stride]
        for i in range(1, _SAMPLE_SIZE):
            k = sample[i]
            j = i - 1
            while j >= 0 and sample[j] > k:
                sample[j + 1] = sample[j]
                j -= 1
            sample[j + 1] = k
        t_lo = -np.inf
        t_hi = np.inf
        if q_lo > 0:
            t_lo = sample[min(_SAMPLE_SIZE - 1, math.ceil((q_lo + _SAMPLE_MARGIN) * _SAMPLE_SIZE))]
        if q_hi < 1:
            t_hi = sample[max(0, math.floor((q_hi - _SAMPLE_MARGIN) * _SAMPLE_SIZE) - 1)]
        if t_lo < t_hi:
            # tail candidates to both ends of ``packed``, without branches
            front = 0
            back = m
            front_w = 0.0
            back_w = 0.0
            for i in range(m):
                k, w = keys[i], nrm[i]
                is_low = k <= t_lo
                is_high = k >= t_hi
                packed[front] = _kernel_order_key(key_bits[i], False) | np.uint64(i)
                packed[back - 1] = _kernel_order_key(key_bits[i], True) | np.uint64(i)
                front_w += w * is_low
                back_w += w * is_high
                front += is_low
                back -= is_high
            if front_w >= target_lo and back_w >= target_hi:
                lo_n, lo_s, lo_w = _kernel_tail(packed, 0, front, sig, nrm, target_lo, w_min, w_max)
                hi_n, hi_s, hi_w = _kernel_tail(packed, back, m, sig, nrm, target_hi, w_min, w_max)
                return m - lo_n - hi_n, total_s - lo_s - hi_s, total_w - lo_w - hi_w
    # exact selection over every pixel of the bin (small bins, or a missed bracket)
    for i in range(m):
        packed[i] = _kernel_order_key(key_bits[i], False) | np.uint64(i)
    lo_n, lo_s, lo_w = _kernel_tail(packed, 0, m, sig, nrm, target_lo, w_min, w_max)
    for j in range(lo_n, m):
        i = packed[j] & np.uint64(0xFFFFFFFF)
        packed[j] = _kernel_order_key(key_bits[i], True) | i
    hi_n, hi_s, hi_w = _kernel_tail(packed, lo_n, m, sig, nrm, target_hi, w_min, w_max)
    kept = m - lo_n - hi_n
    if kept <= 0:
        return 0, 0.0, 0.0
    return kept, total_s - lo_s - hi_s, total_w - lo_w - hi_w


@numba.njit(cache=True, nogil=True)
def _kernel_sigma_clip_bin(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    frame, pixel_index, normalization, dark, has_dark, mask_negative, start, stop, threshold, max_iter, keys, sig, nrm
):  # pragma: no cover
    """Sigma-clipped mean of one bin (azimuthal error model, Chauvenet floor)."""
    m = 0
    for e in range(start, stop):
        raw = frame[pixel_index[e]]
        if mask_negative and raw < 0:
            continue
        s = np.float32(raw) - dark[e] if has_dark else np.float32(raw)
        w = normalization[e]
        keys[m], sig[m], nrm[m] = s / w, s, w
        m += 1
    # kept pixels stay in [0, m): clipped ones are swapped out of the range
    sum_s = 0.0
    sum_w = 0.0
    for i in range(m):
        sum_s += sig[i]
        sum_w += nrm[i]
    for _ in range(max_iter):
        if m == 0 or sum_w <= 0:
            break
        mean = sum_s / sum_w
        var = 0.0
        sum_w2 = 0.0
        for i in range(m):
            d = (keys[i] - mean) * nrm[i]
            var += d * d
            sum_w2 += nrm[i] * nrm[i]
        std = math.sqrt(var / sum_w2)
        chauvenet = math.sqrt(2.0 * math.log(max(m, 3) / math.sqrt(2.0 * math.pi)))
        limit = max(threshold, chauvenet) * std
        i = 0
        n_before = m
        while i < m:
            if abs(keys[i] - mean) > limit:
                m -= 1
                keys[i], keys[m] = keys[m], keys[i]
                sig[i], sig[m] = sig[m], sig[i]
                nrm[i], nrm[m] = nrm[m], nrm[i]
            else:
                i += 1
        if m == n_before:
            break
        sum_s = 0.0
        sum_w = 0.0
        for i in range(m):
            sum_s += sig[i]
            sum_w += nrm[i]
    return m, sum_s, sum_w


@numba.njit(cache=True, nogil=True)
def _kernel_mean_bin(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    frame, pixel_index, normalization, dark, has_dark, mask_negative, start, stop
):  # pragma: no cover
    m = 0
    sum_s = 0.0
    sum_w = 0.0
    for e in range(start, stop):
        raw = frame[pixel_index[e]]
        if mask_negative and raw < 0:
            continue
        s = np.float32(raw) - dark[e] if has_dark else np.float32(raw)
        sum_s += s
        sum_w += normalization[e]
        m += 1
    return m, sum_s, sum_w


@numba.njit(cache=True, parallel=True)
def _kernel_reduce(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    frame,
    indptr,
    pixel_index,
    normalization,
    dark,
    has_dark,
    mask_negative,
    method,
    q_lo,
    q_hi,
    threshold,
    max_iter,
    empty,
    intensity,
    count,
    sum_signal,
    sum_norm,
):  # pragma: no cover
    n_bins = indptr.size - 1
    largest = 0
    for b in range(n_bins):
        largest = max(largest, indptr[b + 1] - indptr[b])
    n_tasks = (n_bins + _BINS_PER_TASK - 1) // _BINS_PER_TASK
    for task in numba.prange(n_tasks):
        keys = np.empty(largest, np.float32)
        sig = np.empty(largest, np.float64)
        nrm = np.empty(largest, np.float64)
        packed = np.empty(largest, np.uint64)
        sample = np.empty(_SAMPLE_SIZE, np.float32)
        for b in range(task * _BINS_PER_TASK, min(n_bins, (task + 1) * _BINS_PER_TASK)):
            start, stop = indptr[b], indptr[b + 1]
            if method == 0:
                kept, s, w = _kernel_trimmed_bin(frame, pixel_index, normalization, dark, has_dark, mask_negative,
                                                 start, stop, q_lo, q_hi, keys, sig, nrm, packed, sample)  # fmt: skip
            elif method == 1:
                kept, s, w = _kernel_mean_bin(frame, pixel_index, normalization, dark, has_dark, mask_negative,
                                              start, stop)  # fmt: skip
            else:
                kept, s, w = _kernel_sigma_clip_bin(frame, pixel_index, normalization, dark, has_dark, mask_negative,
                                                    start, stop, threshold, max_iter, keys, sig, nrm)  # fmt: skip
            count[b] = kept
            sum_signal[b] = s
            sum_norm[b] = w
            intensity[b] = s / w if kept > 0 and w > 0 else empty
