"""Settings of the live XRD-CT analysis.

- :class:`XrdctAnalysisConfig`: every reduction parameter, checked when built and recorded
  as attributes of ``/entry/xrdct``; it makes the run's pyFAI integrator and reducer.
- :data:`ZIGZAG_PLANS`, :data:`SERIES_PLANS`: the plans whose runs are analysed.
- :data:`INTEGRATED_SUFFIX`: the stream suffix of patterns integrated by workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streaming.errors import ConfigError
from streaming.processing.fbp import FBP_FILTERS
from streaming.processing.integration import AzimuthalReducer, IntegrationConfig
from streaming.processing.maps import MapsConfig

__all__ = ["INTEGRATED_SUFFIX", "SERIES_PLANS", "ZIGZAG_PLANS", "XrdctAnalysisConfig"]

INTEGRATED_SUFFIX = ".integrated"
SERIES_PLANS = ("operando_xrdct",)  # zigzag scans repeated in one run, frames tagged with "scan"
ZIGZAG_PLANS = ("xrdct_zigzag", *SERIES_PLANS)


@dataclass(frozen=True, kw_only=True, eq=False)
class XrdctAnalysisConfig:
    """Settings of the XRD-CT analysis; checked when built.

    Attributes
    ----------
    out_dir : Path
        Where the run files are: the sidecar ``<run>.xrdct.h5`` and ``<run>.xrdct.png`` go
        next to them.
    integration : IntegrationConfig
        Azimuthal reduction (trimmed mean (5, 95) by default).
    poni_path : Path or None
        pyFAI PONI file; None to take the geometry from the start document's ``geometry``.
    mask : ndarray of bool, detector shape, or None
        Pixels to exclude (True); None for the detector's own (gaps). Negative pixel values
        are skipped in every frame anyway.
    detector : str
        Frame stream of the area detector.
    center_px : float or None
        Centre of rotation, translation-index units; None to estimate it from the data.
    live_channels : tuple of int or None
        Radial channels reconstructed live; None for all.
    filter_name : str
        FBP filter, one of :data:`~streaming.processing.fbp.FBP_FILTERS`.
    air_edge_px : int
        Translations at each edge of a line taken as air scatter and subtracted (0: none).
    monitor : str or None
        Beam monitor (an ion chamber's or diode's reading recorded with each frame, in its
        header's ``positions``) each pattern is divided by; None for none. A frame without a
        positive reading is rejected (counted; its pattern is then interpolated).
    recenter_tolerance_px : float
        Largest change of the estimated centre that keeps the live reconstruction.
    maps : MapsConfig
        Windows, phase references and lattice peaks.
    figure : bool
        Write a PNG summary.
    figure_channel_deg : float or None
        2θ of the reconstruction shown in the figure; None for the strongest channel.
    """

    out_dir: Path
    integration: IntegrationConfig = field(default_factory=lambda: IntegrationConfig(n_radial=1000))
    poni_path: Path | None = None
    mask: np.ndarray | None = None
    detector: str = "pilatus"
    center_px: float | None = None
    live_channels: tuple[int, ...] | None = None
    filter_name: str = "ram-lak"
    air_edge_px: int = 2
    monitor: str | None = None
    recenter_tolerance_px: float = 0.05
    maps: MapsConfig = field(default_factory=MapsConfig)
    figure: bool = True
    figure_channel_deg: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not isinstance(self.integration, IntegrationConfig):
            raise ConfigError(f"xrdct_analysis.integration: must be an IntegrationConfig, got {self.integration!r}")
        if self.poni_path is not None:
            object.__setattr__(self, "poni_path", Path(self.poni_path))
            if not self.poni_path.is_file():
                raise ConfigError(f"xrdct_analysis.poni_path: no such file {str(self.poni_path)!r}")
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(bool)
            if mask.ndim != 2:
                raise ConfigError(f"xrdct_analysis.mask: must be 2D, got shape {mask.shape}")
            object.__setattr__(self, "mask", mask)
        if not (isinstance(self.detector, str) and self.detector and "." not in self.detector):
            raise ConfigError(f"xrdct_analysis.detector: must be a stream name without '.', got {self.detector!r}")
        if self.center_px is not None and not (
            isinstance(self.center_px, int | float) and math.isfinite(self.center_px)
        ):
            raise ConfigError(f"xrdct_analysis.center_px: must be None or a finite number, got {self.center_px!r}")
        if self.live_channels is not None:
            channels = tuple(int(c) for c in self.live_channels)
            if not channels or min(channels) < 0 or max(channels) >= self.integration.n_radial:
                raise ConfigError(
                    f"xrdct_analysis.live_channels: need indices within [0, {self.integration.n_radial}), "
                    f"got {self.live_channels!r}"
                )
            object.__setattr__(self, "live_channels", channels)
        if self.filter_name not in FBP_FILTERS:
            raise ConfigError(
                f"xrdct_analysis.filter_name: must be one of {', '.join(FBP_FILTERS)}, got {self.filter_name!r}"
            )
        if not (isinstance(self.air_edge_px, int) and self.air_edge_px >= 0):
            raise ConfigError(f"xrdct_analysis.air_edge_px: must be an int >= 0, got {self.air_edge_px!r}")
        if self.monitor is not None and not (isinstance(self.monitor, str) and self.monitor):
            raise ConfigError(f"xrdct_analysis.monitor: must be None or a reading's name, got {self.monitor!r}")
        if not self.recenter_tolerance_px >= 0:
            raise ConfigError(f"xrdct_analysis.recenter_tolerance_px: must be >= 0, got {self.recenter_tolerance_px!r}")
        if not isinstance(self.maps, MapsConfig):
            raise ConfigError(f"xrdct_analysis.maps: must be a MapsConfig, got {self.maps!r}")

    def integrator(self, start: dict[str, Any]):
        """The run's pyFAI ``AzimuthalIntegrator``: the PONI file's geometry, else the start document's."""
        import pyFAI

        if self.poni_path is not None:
            return pyFAI.load(str(self.poni_path))
        if start.get("geometry"):
            return pyFAI.load(dict(start["geometry"]))
        raise ConfigError("xrdct_analysis.poni_path: needed, the start document carries no geometry")

    def reducer(self, start: dict[str, Any]) -> AzimuthalReducer:
        """The run's azimuthal reducer (geometry as :meth:`integrator`)."""
        return AzimuthalReducer.from_integrator(self.integrator(start), None, self.mask, self.integration)

    def attributes(self) -> dict[str, Any]:
        """The settings as HDF5 attributes (centre of rotation aside: it is the run's)."""
        integration = self.integration
        return {
            "integration_method": integration.method,
            "trim_percentiles": np.array(integration.percentiles),
            "n_radial": integration.n_radial,
            "polarization_factor": np.nan if integration.polarization_factor is None
            else integration.polarization_factor,
            "solid_angle_correction": integration.solid_angle,
            "radial_range_deg": np.array(integration.radial_range_deg or (np.nan, np.nan)),
            "radial_unit": integration.unit,
            "filter_name": self.filter_name,
            "air_edge_px": self.air_edge_px,
            "monitor": self.monitor or "",
            "live_channels": np.array(self.live_channels if self.live_channels is not None else [], dtype=np.int64),
            "poni_path": "" if self.poni_path is None else str(self.poni_path),
            "mask": "configured" if self.mask is not None else "detector gaps and negative pixels",
        }  # fmt: skip
