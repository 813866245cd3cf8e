"""The live XRD-CT analysis.

- :mod:`.config`: :class:`XrdctAnalysisConfig`, every reduction parameter.
- :mod:`.scan`: :class:`XrdctScan`, one zigzag scan's sinogram, live FBP, final centre and maps.
- :mod:`.series`: :class:`ScanSeries`, the finished scans of a run against the potentiostat.
- :mod:`.writer`: the sidecar file ``<run>.xrdct.h5`` (``/entry/xrdct`` of the run file).
- :mod:`.analysis`: :class:`XrdctAnalysis`, the consumer's analysis of one run, and its factory.
- :mod:`.workers`: :class:`IntegrationWorker`, integration scaled out over processes.
- :mod:`.figure`: PNG summaries, drawn from results (imported only when a figure is asked for).
"""

from .analysis import XrdctAnalysis, xrdct_analysis_factory
from .config import INTEGRATED_SUFFIX, XrdctAnalysisConfig
from .scan import XrdctScan
from .series import ScanSeries
from .workers import IntegrationWorker

__all__ = [
    "INTEGRATED_SUFFIX",
    "IntegrationWorker",
    "ScanSeries",
    "XrdctAnalysis",
    "XrdctAnalysisConfig",
    "XrdctScan",
    "xrdct_analysis_factory",
]
