"""Phase references for mapping the simulated AAA cell: what a scientist takes from a
structure database for the cell's phases, here computed from the simulator's own phase
models (:mod:`simulators.phases`) at the beam's wavelength."""

from __future__ import annotations

import numpy as np

from streaming.processing.maps import LatticePeak, MapsConfig, PeakWindow, PhaseReference

from . import phases
from .xrdct import SECONDARY_NMC_LATTICE_ANGSTROM
from .xrdct_presets import PRESETS, WAVELENGTH_ANGSTROM

__all__ = ["aaa_cell_maps_config"]


def aaa_cell_maps_config(fwhm_deg: float | None = None, *, preset: str = "tiny") -> MapsConfig:
    """Maps of the AAA NMC532/graphite cell: every phase's reference pattern (the active
    NMC532 as the two ends of its lattice range, which combine linearly into any lattice
    between), the NMC (003) line fitted for the c lattice parameter (c = 3 d(003)), and an
    intensity window on that line.

    ``fwhm_deg``: line width of the references, degrees 2θ (default: the ``preset``'s).
    """
    fwhm = PRESETS[preset].fwhm_deg if fwhm_deg is None else float(fwhm_deg)
    radial = np.linspace(0.1, 15.0, 6000)  # their own fine axis: the analysis resamples

    def pattern(component) -> np.ndarray:
        return phases.pattern_of(component, radial, WAVELENGTH_ANGSTROM, fwhm)

    single = {"Fe": phases.FE_BCC, "Cu": phases.CU_FCC, "Al": phases.AL_FCC, "separator": phases.SEPARATOR,
              "graphite": phases.GRAPHITE, "LiC30": phases.LIC30, "LiC12": phases.LIC12, "LiC6": phases.LIC6,
              "NMC532-secondary": phases.nmc532(*SECONDARY_NMC_LATTICE_ANGSTROM)}  # fmt: skip
    references = [PhaseReference(name, radial, pattern(phase)) for name, phase in single.items()]
    ends = [phases.nmc532(*phases.nmc532_lattice(x), li_occupancy=0.5 + 0.5 * x) for x in (0.0, 1.0)]
    references.append(PhaseReference("NMC532", radial, np.stack([pattern(p) for p in ends])))
    return MapsConfig(
        windows=(PeakWindow(name="NMC532_003", window_deg=(1.36, 1.52), background_width_deg=0.08),),
        phases=tuple(references),
        lattice_peaks=(LatticePeak(name="NMC532_c", window_deg=(1.30, 1.58), lattice_per_d=3.0, fwhm_guess_deg=fwhm),),
    )
