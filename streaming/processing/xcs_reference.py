"""Reference measurements of XCS: the homogeneous PTFE disk and the profile without the sample.

The XCS-CT paper records, besides the cell, a completely homogeneous PTFE disk and a profile
without the sample, "for flat-field correction to remove signals from the sample holder and
other objects". From them:

- :func:`pixel_efficiency`: each pixel's relative efficiency (pinhole geometry, detector
  response): the PTFE disk scatters the same everywhere, so its counts per pixel, over the
  median pixel, are the efficiency (1 for a typical pixel).
- :func:`correct_spectra`: a measurement's spectra less the no-sample background scaled to the
  same number of frames, divided by the efficiency. The EMF is a ratio within a pixel's
  spectrum, so the efficiency cancels there; the background does not, and must go first.

Counts are per pixel and energy bin, (80, 80, n_bins).
"""

from __future__ import annotations

import numpy as np

__all__ = ["correct_spectra", "pixel_efficiency"]


def pixel_efficiency(reference_counts: np.ndarray, *, background: np.ndarray | None = None) -> np.ndarray:
    """Relative efficiency of each pixel, (80, 80), from a homogeneous scatterer's spectra
    (less its ``background``, same frames); NaN where the reference has no counts."""
    reference = np.asarray(reference_counts, dtype=np.float64)
    if background is not None:
        reference = reference - np.asarray(background, dtype=np.float64)
    totals = reference.sum(axis=-1)
    lit = totals > 0
    if not lit.any():
        raise ValueError("the reference measurement has no counts")
    efficiency = np.full(totals.shape, np.nan)
    efficiency[lit] = totals[lit] / np.median(totals[lit])
    return efficiency


def correct_spectra(
    counts: np.ndarray,
    *,
    n_frames: int,
    background: np.ndarray | None = None,
    background_frames: int | None = None,
    efficiency: np.ndarray | None = None,
) -> np.ndarray:
    """``counts`` (…, n_bins) less ``background`` scaled by ``n_frames / background_frames``,
    divided by ``efficiency`` (…), as float64 (negative bins after subtraction are kept: the
    EMF integrates them)."""
    corrected = np.asarray(counts, dtype=np.float64).copy()
    if background is not None:
        if not background_frames or background_frames <= 0:
            raise ValueError(f"background_frames must be > 0 with a background, got {background_frames!r}")
        corrected -= np.asarray(background, dtype=np.float64) * (n_frames / background_frames)
    if efficiency is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            corrected /= np.asarray(efficiency, dtype=np.float64)[..., None]
    return corrected
