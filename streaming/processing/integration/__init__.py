"""Azimuthal integration of area-detector frames: trimmed mean, mean and sigma clipping.

- :mod:`.config`: :class:`IntegrationConfig`: radial bins, reduction method, trim percentiles,
  corrections; ``INTEGRATION_METHODS``.
- :mod:`.reducer`:

  - :class:`IntegrationResult`: per-bin intensity, pixel count and the kept sums.
  - :class:`AzimuthalReducer`: built once from a pyFAI geometry (PONI file or integrator),
    a mask and a config; it owns the pixel-to-bin table and the per-pixel corrections, and
    :meth:`AzimuthalReducer.integrate` reduces one frame to ``(n_radial,)`` intensities.
  - :func:`reduce_frame`: the same reduction as a pure function of arrays.
  - :func:`pixel_scan_order`: the table's entries in pixel order, for :func:`reduce_frame`.

- :mod:`._kernels` (private): the numba kernels of the per-frame work, and how the trimmed
  mean stays fast.
- :mod:`.gpu`: :class:`GpuTrimmedMean`, the trimmed mean on a CUDA GPU (CuPy, optional).

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

Ties: pixels of equal ``s/n`` on a cut (frequent with raw integer counts, e.g. zeros) may be
ordered differently than pyFAI's unstable sort, so which one is dropped can differ; the
bin's result then differs by about ``1/N`` of the bin mean. On tie-free data the two agree
to rounding.

Frames are read as they come (int32 counts or floats); with ``mask_negative`` (default)
negative values, which Pilatus writes into gaps (-1) and defective pixels (-2), are skipped
in every frame on top of the static mask; NaN values (float frames) are always skipped.

Angles: the radial axis is 2θ in degrees (``radial_deg``), the unit of PONI-based
integration at the beamline; pyFAI works in radians internally.

References
----------
J. Kieffer et al., pyFAI: "Median filter and quantile mean in azimuthal space"
(``AzimuthalIntegrator.medfilt1d_ng``) and "sigma-clipping" (``sigma_clip_ng``), pyFAI 2026.9.
"""

from .config import INTEGRATION_METHODS, IntegrationConfig
from .gpu import GpuTrimmedMean
from .reducer import AzimuthalReducer, IntegrationResult, pixel_scan_order, reduce_frame

__all__ = [
    "INTEGRATION_METHODS",
    "AzimuthalReducer",
    "GpuTrimmedMean",
    "IntegrationConfig",
    "IntegrationResult",
    "pixel_scan_order",
    "reduce_frame",
]
