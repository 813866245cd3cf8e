"""Physics behind the simulated devices; deterministic, seeded, free of ophyd and ZeroMQ.

- :mod:`.xrdct`: the XRD-CT cell, scan and Pilatus frames (with :mod:`.xrdct_presets`,
  :mod:`.crystal`, :mod:`.phases`, :mod:`.cell_phantom`).
- :mod:`.coin_cell`, :mod:`.xct`, :mod:`.xcs`, :mod:`.hexitec`: the XCS-CT coin cell, its XCT
  projections, its Compton spectra and the HEXITEC frames.
- :mod:`.battery` (and the optional :mod:`.pybamm_battery`), :mod:`.clock`: the cell behind
  the potentiostat, on simulated time.
- :mod:`.synthetic`: a small synthetic run for transport tests and the demo.
"""

from .battery import AAA_NMC532_GRAPHITE, COIN_NMC811_LI, EquivalentCircuitBattery, Termination
from .clock import SimulatedClock
from .coin_cell import CoinCellPhantom
from .hexitec import HexitecSimulator
from .synthetic import SyntheticRun, ring_pattern_frames
from .xcs import XcsModel, sheet_column_atoms
from .xct import XctScan
from .xrdct import XrdctSimulation
from .xrdct_presets import PRESETS

__all__ = [
    "AAA_NMC532_GRAPHITE",
    "COIN_NMC811_LI",
    "PRESETS",
    "CoinCellPhantom",
    "EquivalentCircuitBattery",
    "HexitecSimulator",
    "SimulatedClock",
    "SyntheticRun",
    "Termination",
    "XcsModel",
    "XctScan",
    "XrdctSimulation",
    "ring_pattern_frames",
    "sheet_column_atoms",
]
