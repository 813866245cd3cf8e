"""The live analysis layer: thin consumers around the pure algorithms of :mod:`streaming.processing`.

- :mod:`.consumer`: the loop that feeds each run's documents and frames to an analysis.
- :mod:`.delivery`: the frames a consumer missed, from the recorder's file; how a run's came.
- :mod:`.distribute`: XRD-CT frames handed round-robin to integration workers.
- :mod:`.readings`: the potentiostat's readings of a run, for the analyses' series.
- :mod:`.xrdct`: the XRD-CT analysis (scan state, series, HDF5 writer, workers, figures).
- :mod:`.xcsct`: the XCS-CT analysis (HEXITEC spectra and EMF maps, XCT reduction, figures).

Imports the storage and wire layers and :mod:`streaming.processing`, nothing above. The
technique subpackages pull in numba, astra and matplotlib, so they are imported where they
are used, not here.
"""

from .consumer import Analysis, Consumer, ConsumerThread

__all__ = ["Analysis", "Consumer", "ConsumerThread"]
