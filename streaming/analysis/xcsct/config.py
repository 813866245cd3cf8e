"""Settings of the live XCS-CT analysis.

- :class:`XcsctAnalysisConfig`: calibration files, event chain, Compton geometry, XCT
  reduction and segmentation, the XCS region, output folder; checked when built. It makes
  the HEXITEC calibration (:meth:`XcsctAnalysisConfig.calibration`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streaming.errors import ConfigError
from streaming.processing.hexitec import HexitecCalibration, HexitecConfig, read_calibration_files
from streaming.processing.hexitec import pedestal_from_darks as pedestal_of
from streaming.processing.segmentation import COMPONENTS, SegmentationConfig

__all__ = ["XcsctAnalysisConfig"]

_RING_METHODS = ("mirror", "median", "off")


@dataclass(frozen=True, kw_only=True)
class XcsctAnalysisConfig:
    """Settings of :class:`XcsctAnalysis`; raises :class:`ConfigError` naming the key.

    Attributes
    ----------
    out_dir : Path
        Where the run files are recorded: the sidecars and the PNG go next to them.
    gradients_path, intercepts_path : Path
        HEXITEC per-pixel calibration text matrices (keV/ADU, keV).
    dark_frames_path, pedestal_path : Path, optional
        The pedestal: from dark HEXITEC frames (``.npy``, (n, 80, 80) uint16) or a per-pixel
        text matrix (ADU). At least one is needed; dark HEXITEC frames of the run itself
        (index ``image_type`` 0) take precedence when there are any.
    hexitec : HexitecConfig
        Threshold, charge-sharing rule, energy bins.
    batch_frames : int
        HEXITEC frames handed to the event chain at once (its per-call cost is amortised).
    incident_kev, angle_deg : float
        Beam energy (keV) and scattering angle (degrees) of the Compton kinematics.
    ring_removal : {"mirror", "median", "off"}
    filter_name : str
        FBP filter (:data:`streaming.processing.xct.ASTRA_FILTERS`).
    center_px : float, optional
        Rotation-axis column; default the camera's centre.
    xct_pixel_size_m, xct_row_height_m : float
        Camera pixel width and row height at the sample, m (μ comes out in 1/m).
    xct_z_origin_m : float
        Height of camera row 0's lower face in the vertical stage's frame, m.
    xct_n_pixels : int
        Reconstructed slices are this many pixels across (a multiple of 80, the XCS grid).
    sheet_thickness_m : float
        XCS sheet-beam thickness, m.
    segmentation : SegmentationConfig
    region_component : str
        The XCT component whose mask is the EMF region (``"cathode"``).
    region_fraction : float
        A pixel belongs to the region when this fraction of its sheet column is in it.
    figure : bool
        Write the PNG summary.
    background_path : Path, optional
        ``.npz`` of a measurement without the sample (the paper's reference profile):
        ``spectra`` (80, 80, n_bins) and ``n_frames``; scaled to each acquisition's frames and
        subtracted before the EMF (:func:`~streaming.processing.xcs_reference.correct_spectra`).
    """

    out_dir: Path
    gradients_path: Path
    intercepts_path: Path
    dark_frames_path: Path | None = None
    pedestal_path: Path | None = None
    hexitec: HexitecConfig = field(default_factory=HexitecConfig)
    batch_frames: int = 1000
    incident_kev: float = 114.64
    angle_deg: float = 90.0
    ring_removal: str = "mirror"
    filter_name: str = "ram-lak"
    center_px: float | None = None
    xct_pixel_size_m: float
    xct_row_height_m: float
    xct_z_origin_m: float = 0.0
    xct_n_pixels: int = 80
    sheet_thickness_m: float = 0.25e-3
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    region_component: str = "cathode"
    region_fraction: float = 0.5
    figure: bool = True
    background_path: Path | None = None

    def __post_init__(self) -> None:
        for key in ("out_dir", "gradients_path", "intercepts_path", "dark_frames_path", "pedestal_path",
                    "background_path"):  # fmt: skip
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, Path(value))
        for key in ("gradients_path", "intercepts_path", "dark_frames_path", "pedestal_path", "background_path"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ConfigError(f"xcs_analysis.{key}: no such file {path}")
        if self.dark_frames_path is None and self.pedestal_path is None:
            raise ConfigError("xcs_analysis.dark_frames_path: give dark_frames_path or pedestal_path")
        if not isinstance(self.hexitec, HexitecConfig):
            raise ConfigError(f"xcs_analysis.hexitec: must be a HexitecConfig, got {self.hexitec!r}")
        if not isinstance(self.segmentation, SegmentationConfig):
            raise ConfigError(f"xcs_analysis.segmentation: must be a SegmentationConfig, got {self.segmentation!r}")
        if not (
            isinstance(self.batch_frames, int) and not isinstance(self.batch_frames, bool) and self.batch_frames > 0
        ):
            raise ConfigError(f"xcs_analysis.batch_frames: must be an int > 0, got {self.batch_frames!r}")
        if not (isinstance(self.xct_n_pixels, int) and self.xct_n_pixels > 0 and self.xct_n_pixels % 80 == 0):
            raise ConfigError(
                f"xcs_analysis.xct_n_pixels: must be a positive multiple of 80, got {self.xct_n_pixels!r}"
            )
        for key in ("incident_kev", "xct_pixel_size_m", "xct_row_height_m", "sheet_thickness_m"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"xcs_analysis.{key}: must be a finite number > 0, got {value!r}")
        if not (isinstance(self.angle_deg, int | float) and 0 < self.angle_deg < 180):
            raise ConfigError(f"xcs_analysis.angle_deg: must be within (0, 180), got {self.angle_deg!r}")
        if self.ring_removal not in _RING_METHODS:
            raise ConfigError(f"xcs_analysis.ring_removal: must be one of {_RING_METHODS}, got {self.ring_removal!r}")
        if self.region_component not in COMPONENTS:
            raise ConfigError(
                f"xcs_analysis.region_component: must be one of {COMPONENTS}, got {self.region_component!r}"
            )
        if not (isinstance(self.region_fraction, int | float) and 0 < self.region_fraction <= 1):
            raise ConfigError(f"xcs_analysis.region_fraction: must be within (0, 1], got {self.region_fraction!r}")

    def calibration(self, dark_frames: np.ndarray | None = None) -> HexitecCalibration:
        """The HEXITEC calibration, its pedestal from ``dark_frames`` when given."""
        gradient, intercept = read_calibration_files(self.gradients_path, self.intercepts_path)
        if dark_frames is None and self.dark_frames_path is not None:
            dark_frames = np.load(self.dark_frames_path)
        pedestal = pedestal_of(dark_frames) if dark_frames is not None else np.loadtxt(self.pedestal_path, ndmin=2)
        return HexitecCalibration(gradient, intercept, pedestal)
