"""The numba kernels of the per-frame reduction (private; called by :func:`.reducer.reduce_frame`).

- ``_kernel_scatter``: the frame's valid values (raw - dark) into bin order.
- ``_kernel_reduce``: every bin's kept count and sums, in parallel tasks, by method:
  ``_kernel_trimmed_bin``, ``_kernel_keys_and_sums`` (mean), ``_kernel_sigma_clip_bin``.
- helpers of the trimmed mean: ``_kernel_order_key``, ``_kernel_select_rank``,
  ``_kernel_weighted_prefix``, ``_kernel_trim_bracket``.

How the trimmed mean stays fast: the frame is first scattered into bin order in one pass
over its pixels (streamed reads instead of a random gather), so each bin's values are
contiguous. Only the tails need ordering: a 64-pixel strided sample of ``s/n`` brackets the
two cut values with a safety margin; one branch-free pass lists the tail candidates (about
13 % of the pixels on each side), where a weighted quickselect finds the exact cut. When a
bracket misses (too few candidates by weight; rare, e.g. very textured rings) the bin falls
back to a weighted quickselect over all its pixels, so the result is always exact.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["_kernel_reduce", "_kernel_scatter"]

_N_TASKS = 256  # parallel tasks per frame, of equal pixel counts: threads get equal shares
_SAMPLE_SIZE = 64  # pixels sampled per bin to bracket the trim cuts
_SAMPLE_MIN_BIN = 4 * _SAMPLE_SIZE  # smaller bins go straight to the exact selection
_SAMPLE_MARGIN = 0.08  # bracket margin in quantile: ~3 sampling σ at 5 % with 64 samples


# -- numba kernels -----------------------------------------------------------------------------
# Per frame, two steps. _kernel_scatter reads the frame in pixel order and writes each valid
# value (raw - dark, float32; NaN where skipped) to its place in the bin-ordered table: the
# reads stream, and each bin's writes advance in order, so this costs about a third of the
# random gather ``frame[pixel_index]`` it replaces (6 vs 17 ms per Pilatus2M frame, 1 core).
# The per-bin kernels then read contiguous values and normalisations; their scratch (keys s/n
# as float32, as pyFAI sorts them, and packed order keys) stays in L1.


@numba.njit(cache=True, parallel=True, nogil=True)
def _kernel_scatter(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    frame, scan_pixels, scan_destination, scan_dark, has_dark, mask_negative, values
):  # pragma: no cover
    n = scan_pixels.size
    n_chunks = 64
    for chunk in numba.prange(n_chunks):
        for k in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            raw = frame[scan_pixels[k]]
            value = np.float32(raw)
            if has_dark:
                value = value - scan_dark[k]
            if mask_negative and raw < 0:
                value = np.float32(np.nan)
            values[scan_destination[k]] = value


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def _kernel_keys_and_sums(values, normalization, start, stop, keys):  # pragma: no cover
    """keys[i] = s/n of entry ``start + i`` (NaN where skipped); returns (m, Σ s, Σ n) of the
    valid entries. Reassociated sums so that the loop vectorises (no NaN/inf assumptions)."""
    m = 0
    total_s = 0.0
    total_w = 0.0
    for i in range(stop - start):
        value = values[start + i]
        weight = normalization[start + i]
        keys[i] = value / weight
        valid = not math.isnan(value)
        total_s += value if valid else np.float32(0.0)
        total_w += weight if valid else np.float32(0.0)
        m += valid
    return m, total_s, total_w


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
def _kernel_select_rank(sample, n, rank):  # pragma: no cover
    """The ``rank``-th smallest of ``sample[:n]`` (Hoare quickselect, rearranges it)."""
    lo = 0
    hi = n - 1
    while lo < hi:
        pivot = sample[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while sample[i] < pivot:
                i += 1
            while sample[j] > pivot:
                j -= 1
            if i <= j:
                sample[i], sample[j] = sample[j], sample[i]
                i += 1
                j -= 1
        if rank <= j:
            hi = j
        elif rank >= i:
            lo = i
        else:
            break
    return sample[rank]


@numba.njit(cache=True, nogil=True)
def _kernel_weighted_prefix(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    packed, lo, hi, values, normalization, base, target
):  # pragma: no cover
    """Exclude from the front of ``packed[lo:hi]`` (order key << 32 | entry offset from
    ``base``, unique) every entry whose cumulative weight *before* it is below ``target``.

    A weighted quickselect: partition around a median-of-three pivot, keep the side that
    holds the cut, finish small ranges by insertion sort. The excluded entries end up first.
    Returns (n_excluded, Σ s, Σ n) of them.
    """
    if target <= 0:
        return 0, 0.0, 0.0
    start = lo
    acc_s = 0.0
    acc_w = 0.0
    offset_mask = np.uint64(0xFFFFFFFF)
    while hi - lo > 16:
        a, b, c = packed[lo], packed[(lo + hi) // 2], packed[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # unique keys: [lo, i) is never empty
        i = lo
        j = hi - 1
        while True:
            while packed[i] < pivot:
                i += 1
            while packed[j] >= pivot and j > i:
                j -= 1
            if i >= j:
                break
            packed[i], packed[j] = packed[j], packed[i]
        left_s = 0.0
        left_w = 0.0
        for t in range(lo, i):
            e = base + np.int64(packed[t] & offset_mask)
            left_s += values[e]
            left_w += normalization[e]
        if acc_w + left_w >= target:
            hi = i
        else:
            acc_s += left_s
            acc_w += left_w
            lo = i
    for t in range(lo + 1, hi):
        key = packed[t]
        u = t - 1
        while u >= lo and packed[u] > key:
            packed[u + 1] = packed[u]
            u -= 1
        packed[u + 1] = key
    t = lo
    while t < hi and acc_w < target:
        e = base + np.int64(packed[t] & offset_mask)
        acc_s += values[e]
        acc_w += normalization[e]
        t += 1
    return t - start, acc_s, acc_w


@numba.njit(cache=True, nogil=True)
def _kernel_trim_bracket(keys, n, q_lo, q_hi, sample):  # pragma: no cover
    """Key values bracketing the two cuts with a safety margin, from a strided sample;
    (-inf, inf) where there is no cut or too few valid samples."""
    stride = n // _SAMPLE_SIZE
    n_sampled = 0
    for j in range(_SAMPLE_SIZE):
        key = keys[j * stride]
        if not math.isnan(key):
            sample[n_sampled] = key
            n_sampled += 1
    t_lo = -np.inf
    t_hi = np.inf
    if n_sampled >= _SAMPLE_SIZE // 2:
        if q_lo > 0:
            rank = min(n_sampled - 1, math.ceil((q_lo + _SAMPLE_MARGIN) * n_sampled))
            t_lo = _kernel_select_rank(sample, n_sampled, rank)
        if q_hi < 1:
            rank = max(0, math.floor((q_hi - _SAMPLE_MARGIN) * n_sampled) - 1)
            t_hi = _kernel_select_rank(sample, n_sampled, rank)
    return t_lo, t_hi


@numba.njit(cache=True, nogil=True)
def _kernel_trimmed_bin(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    values, normalization, start, stop, q_lo, q_hi, keys, packed_lo, packed_hi, sample
):  # pragma: no cover
    """Trimmed mean of one bin: returns (count, sum_signal, sum_norm) of the kept pixels."""
    n = stop - start
    m, total_s, total_w = _kernel_keys_and_sums(values, normalization, start, stop, keys)
    if m == 0:
        return 0, 0.0, 0.0
    target_lo = q_lo * total_w
    target_hi = total_w - q_hi * total_w
    key_bits = keys.view(np.uint32)
    if n >= _SAMPLE_MIN_BIN:
        t_lo, t_hi = _kernel_trim_bracket(keys, n, q_lo, q_hi, sample)
        if t_lo < t_hi:
            # tail candidates, without branches (NaN keys compare false)
            n_lo = 0
            n_hi = 0
            for i in range(n):
                key = keys[i]
                packed_lo[n_lo] = i
                packed_hi[n_hi] = i
                n_lo += key <= t_lo
                n_hi += key >= t_hi
            w_lo = 0.0
            for t in range(n_lo):
                w_lo += normalization[start + np.int64(packed_lo[t])]
            w_hi = 0.0
            for t in range(n_hi):
                w_hi += normalization[start + np.int64(packed_hi[t])]
            if w_lo >= target_lo and w_hi >= target_hi:  # else the cuts lie outside: exact below
                for t in range(n_lo):
                    i = packed_lo[t]
                    packed_lo[t] = _kernel_order_key(key_bits[i], False) | i
                for t in range(n_hi):
                    i = packed_hi[t]
                    packed_hi[t] = _kernel_order_key(key_bits[i], True) | i
                lo_n, lo_s, lo_w = _kernel_weighted_prefix(packed_lo, 0, n_lo, values, normalization, start, target_lo)
                hi_n, hi_s, hi_w = _kernel_weighted_prefix(packed_hi, 0, n_hi, values, normalization, start, target_hi)
                return m - lo_n - hi_n, total_s - lo_s - hi_s, total_w - lo_w - hi_w
    # exact selection over every valid pixel (small bins, or a missed bracket)
    n_valid = 0
    for i in range(n):
        if not math.isnan(keys[i]):
            packed_lo[n_valid] = _kernel_order_key(key_bits[i], False) | np.uint64(i)
            n_valid += 1
    lo_n, lo_s, lo_w = _kernel_weighted_prefix(packed_lo, 0, n_valid, values, normalization, start, target_lo)
    for t in range(lo_n, n_valid):
        i = packed_lo[t] & np.uint64(0xFFFFFFFF)
        packed_lo[t] = _kernel_order_key(key_bits[i], True) | i
    hi_n, hi_s, hi_w = _kernel_weighted_prefix(packed_lo, lo_n, n_valid, values, normalization, start, target_hi)
    kept = m - lo_n - hi_n
    if kept <= 0:
        return 0, 0.0, 0.0
    return kept, total_s - lo_s - hi_s, total_w - lo_w - hi_w


@numba.njit(cache=True, nogil=True)
def _kernel_sigma_clip_bin(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    values, normalization, start, stop, threshold, max_iter, keys, sig, nrm
):  # pragma: no cover
    """Sigma-clipped mean of one bin (azimuthal error model, Chauvenet floor)."""
    m = 0
    for e in range(start, stop):
        s = values[e]
        if math.isnan(s):
            continue
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


@numba.njit(cache=True, parallel=True)
def _kernel_reduce(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    values,
    indptr,
    normalization,
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
    # task boundaries at equal pixel counts: numba's static split of equal-bin tasks gave one
    # thread 55 % of the pixels (bins hold more pixels at larger angles)
    n_tasks = min(n_bins, _N_TASKS)
    bounds = np.empty(n_tasks + 1, np.int64)
    total = indptr[n_bins] - indptr[0]
    b = 0
    for task in range(n_tasks):
        target = indptr[0] + total * task // n_tasks
        while b < n_bins and indptr[b] < target:
            b += 1
        bounds[task] = b
    bounds[n_tasks] = n_bins
    for task in numba.prange(n_tasks):
        keys = np.empty(largest, np.float32)
        packed_lo = np.empty(largest, np.uint64)
        packed_hi = np.empty(largest, np.uint64)
        sample = np.empty(_SAMPLE_SIZE, np.float32)
        sig = np.empty(largest if method == 2 else 0, np.float64)
        nrm = np.empty(largest if method == 2 else 0, np.float64)
        for b in range(bounds[task], bounds[task + 1]):
            start, stop = indptr[b], indptr[b + 1]
            if method == 0:
                kept, s, w = _kernel_trimmed_bin(values, normalization, start, stop, q_lo, q_hi,
                                                 keys, packed_lo, packed_hi, sample)  # fmt: skip
            elif method == 1:
                kept, s, w = _kernel_keys_and_sums(values, normalization, start, stop, keys)
            else:
                kept, s, w = _kernel_sigma_clip_bin(values, normalization, start, stop, threshold, max_iter,
                                                    keys, sig, nrm)  # fmt: skip
            count[b] = kept
            sum_signal[b] = s
            sum_norm[b] = w
            intensity[b] = s / w if kept > 0 and w > 0 else empty
