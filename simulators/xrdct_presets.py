"""The XRD-CT beamline's set-up: the beam, the Pilatus detector and the scan sizes, after the
XRD-CT paper (Small Methods 2021), for :mod:`.xrdct`.

- :data:`WAVELENGTH_ANGSTROM` (the beam) and :data:`PILATUS_PIXEL_M` (the detector's pixel).
- :class:`XrdctPreset` and :data:`PRESETS`: ``tiny`` (tests), ``small`` (demo), ``paper``
  (549 translations x 400 angles, full 1679 x 1475 frames).
- :func:`pilatus_detector`: the Pilatus3 X CdTe 2M as a pyFAI detector, optionally binned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyFAI.detectors import Detector, detector_factory

__all__ = ["PILATUS_PIXEL_M", "PRESETS", "WAVELENGTH_ANGSTROM", "XrdctPreset", "pilatus_detector"]

WAVELENGTH_ANGSTROM = 0.11979  # the paper's 103.5 keV beam
PILATUS_PIXEL_M = 172e-6


@dataclass(frozen=True, kw_only=True)
class XrdctPreset:
    """Scan and detector sizes.

    Attributes
    ----------
    n_translations, n_angles : int
        Scan shape; the reconstruction grid is ``n_translations`` pixels across.
    translation_step_m : float
        Translation step (= reconstruction pixel), m.
    detector_binning : int
        Pilatus pixels per simulated pixel along each axis (1 = the real 1679 x 1475).
    n_radial : int
        Bins of the simulator's 2θ grid.
    fwhm_deg : float
        Instrumental peak width in 2θ, degrees (grows with the binned pixel).
    peak_counts : float
        Expected counts at the brightest Pilatus pixel (172 µm) of the brightest frame. A
        simulated pixel bins ``detector_binning²`` of them and counts their sum, so every
        preset sees the same photons per solid angle (a binned preset is not noisier).
    """

    name: str
    n_translations: int
    n_angles: int
    translation_step_m: float
    detector_binning: int
    n_radial: int
    fwhm_deg: float
    peak_counts: float = 400.0

    def __post_init__(self) -> None:
        for key in ("n_translations", "n_angles", "detector_binning", "n_radial"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be an int >= 1, got {getattr(self, key)!r}")
        for key in ("translation_step_m", "fwhm_deg", "peak_counts"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)!r}")


_CELL_SPAN_M = 10.98e-3  # 549 x 20 µm: the 10.17 mm cell and air on both sides
PRESETS = {
    "tiny": XrdctPreset(
        name="tiny", n_translations=64, n_angles=48, translation_step_m=_CELL_SPAN_M / 64,
        detector_binning=8, n_radial=400, fwhm_deg=0.12,
    ),
    "small": XrdctPreset(
        name="small", n_translations=160, n_angles=120, translation_step_m=_CELL_SPAN_M / 160,
        detector_binning=4, n_radial=1000, fwhm_deg=0.06,
    ),
    "paper": XrdctPreset(
        name="paper", n_translations=549, n_angles=400, translation_step_m=20e-6,
        detector_binning=1, n_radial=2000, fwhm_deg=0.025,
    ),
}  # fmt: skip


def pilatus_detector(binning: int = 1) -> Detector:
    """The Pilatus3 X CdTe 2M (pyFAI ``Pilatus2MCdTe``), optionally binned ``binning`` x
    ``binning`` (cropped to a multiple; a binned pixel touching a gap is masked)."""
    full = detector_factory("Pilatus2MCdTe")
    if binning == 1:
        return full
    rows, cols = full.shape[0] // binning, full.shape[1] // binning
    gaps = full.mask[: rows * binning, : cols * binning].reshape(rows, binning, cols, binning).any(axis=(1, 3))
    detector = Detector(pixel1=PILATUS_PIXEL_M * binning, pixel2=PILATUS_PIXEL_M * binning, max_shape=(rows, cols))
    detector.mask = gaps.astype(np.int8)
    return detector
