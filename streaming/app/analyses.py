"""The live analyses of the main job, configured from its :class:`~.config.OperandoConfig`.

- :func:`default_analyses`: each mode's analysis factory (``make_analysis`` of a consumer).
- :func:`xrdct_analysis_config`: the XRD-CT analysis' settings, shared by the builder and its
  integration workers, which must integrate alike.
- :func:`calibration_folder`: where an XCS-CT experiment's HEXITEC calibration is.
- :func:`open_products`: the products channel the analyses publish on (``live.products``).

The main job (:mod:`.experiment`) and the service processes (:mod:`.processes`) both build
their analyses here, so neither imports the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.analysis.consumer import Analysis
from streaming.errors import ConfigError
from streaming.wire.products import ProductPublisher

from .config import OperandoConfig

if TYPE_CHECKING:
    from streaming.analysis.xrdct import XrdctAnalysisConfig

__all__ = ["XCSCT_ROWS", "AnalysisFactory", "calibration_folder", "default_analyses", "open_products",
           "xrdct_analysis_config"]  # fmt: skip

logger = logging.getLogger(__name__)

AnalysisFactory = Callable[[dict[str, Any]], Analysis | None]

XCSCT_ROWS = 32  # camera rows of the simulated coin cell (sim_xcsct_beamline's n_z)


def open_products(config: OperandoConfig) -> ProductPublisher | None:
    """The products publisher at ``live.products``; None when that is empty, or taken (another
    analysis publishes there: this one goes on without, and says so)."""
    if not config.live.products:
        return None
    try:
        return ProductPublisher(config.live.products)
    except ConfigError as exc:
        logger.warning("live products not published: %s", exc)
        return None


def calibration_folder(config: OperandoConfig) -> Path:
    """Where the HEXITEC calibration of an XCS-CT experiment is: ``xcsct.calibration_dir``,
    by default ``out_dir/calibration``."""
    return Path(config.xcsct.calibration_dir or Path(config.out_dir) / "calibration")


def xrdct_analysis_config(config: OperandoConfig) -> XrdctAnalysisConfig:
    """The XRD-CT analysis' settings from ``config`` (the builder's, and its integration
    workers', which must integrate alike)."""
    from simulators.references import aaa_cell_maps_config
    from simulators.xrdct_presets import PRESETS
    from streaming.analysis.xrdct import XrdctAnalysisConfig
    from streaming.processing.integration import IntegrationConfig

    integration = IntegrationConfig(n_radial=PRESETS[config.xrdct.preset].n_radial,  # the simulated detector's
                                    method=config.xrdct.integration_method,
                                    percentiles=config.xrdct.trim_percentiles)  # fmt: skip
    # the simulated AAA cell's phases (a beamline's config would name its own references)
    return XrdctAnalysisConfig(out_dir=Path(config.out_dir), integration=integration, poni_path=config.xrdct.poni,
                               center_px=config.xrdct.center_of_rotation_px, monitor=config.xrdct.monitor,
                               maps=aaa_cell_maps_config(preset=config.xrdct.preset))  # fmt: skip


def default_analyses(config: OperandoConfig) -> dict[str, AnalysisFactory]:
    """The live analyses of each mode, configured from ``config``: XRD-CT of single scans and
    operando series (geometry from the run's start document unless ``xrdct.poni`` is set),
    and XCS-CT when the HEXITEC calibration is in ``xcsct.calibration_dir`` (default
    ``out_dir/calibration``, where ``operando demo`` writes it)."""
    from simulators.coin_cell import CoinCell
    from streaming.analysis.xcsct import XcsctAnalysisConfig, xcsct_analysis_factory
    from streaming.analysis.xrdct import xrdct_analysis_factory

    out_dir = Path(config.out_dir)
    calibration = calibration_folder(config)
    xrdct = xrdct_analysis_config(config)
    analyses: dict[str, AnalysisFactory] = {"xrdct": xrdct_analysis_factory(xrdct)}
    if (calibration / "gradients.txt").is_file():
        cell = CoinCell()
        analyses["xcsct"] = xcsct_analysis_factory(XcsctAnalysisConfig(
            out_dir=out_dir, gradients_path=calibration / "gradients.txt",
            intercepts_path=calibration / "intercepts.txt", dark_frames_path=calibration / "darks.npy",
            xct_pixel_size_m=cell.diameter_m / 80, xct_row_height_m=cell.height_m / XCSCT_ROWS,
        ))  # fmt: skip
    return analyses
