"""Pure processing algorithms: numpy/scipy/numba in, arrays or result dataclasses out.

No sockets, no files, no logging per frame, and never writing into inputs, so that one
function serves a live consumer, a replay and a batch reprocess alike (STYLE.md R2).

- :mod:`.compton`: Compton kinematics, Compton profiles and the EMF.
"""

from .compton import emf, energy_from_pz, profile_from_spectrum, pz_from_energy

__all__ = ["emf", "energy_from_pz", "profile_from_spectrum", "pz_from_energy"]
