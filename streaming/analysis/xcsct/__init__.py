"""The live XCS-CT analysis.

- :mod:`.config`: :class:`XcsctAnalysisConfig`, calibration, event chain, Compton geometry, XCT.
- :mod:`.xct`: the XCT scans of the run: flat/dark, reconstruction, segmentation, their file.
- :mod:`.analysis`: :class:`XcsctAnalysis`, the consumer's analysis of one ``operando_xcsct``
  run (EMF maps against charge, masked by the latest XCT), and its factory.
- :mod:`.figure`: the PNG summary, drawn from results (imported only when a figure is asked for).
"""

from .analysis import XcsctAnalysis, xcsct_analysis_factory
from .config import XcsctAnalysisConfig

__all__ = ["XcsctAnalysis", "XcsctAnalysisConfig", "xcsct_analysis_factory"]
