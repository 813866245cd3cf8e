"""Pure processing algorithms: numpy/scipy/numba in, arrays or result dataclasses out.

No sockets, no files, no logging per frame, and never writing into inputs, so that one
function serves a live consumer, a replay and a batch reprocess alike (STYLE.md R2).

- :mod:`.compton`: Compton kinematics, Compton profiles and the EMF.
- :mod:`.hexitec`: the HEXITEC event chain (threshold, calibration, charge sharing, spectra).
- :mod:`.xct`: XCT flat/dark, -log, ring removal and FBP (astra; tomopy optional).
- :mod:`.segmentation`: coin-cell component masks of an XCT volume, and on the XCS grid.

Only :mod:`.compton`'s names are imported here; the other modules pull in numba, astra and
scikit-image, so they are imported where they are used (``from streaming.processing.hexitec
import SpectrumAccumulator``), which keeps ``import streaming.processing`` light for the
simulators and the CLI.
"""

from .compton import emf, energy_from_pz, profile_from_spectrum, pz_from_energy

__all__ = ["emf", "energy_from_pz", "profile_from_spectrum", "pz_from_energy"]
