"""The phases of the XRD-CT cell, with their structures.

Current collectors and casing: :data:`FE_BCC` (steel), :data:`CU_FCC`, :data:`AL_FCC`.
Anode: :data:`GRAPHITE` and the lithiated stages :data:`LIC30` (stage 5), :data:`LIC12`
(stage 2), :data:`LIC6` (stage 1). Cathode: :func:`nmc532` (R-3m layered oxide whose
lattice follows its lithium content). Separator: :data:`SEPARATOR`, polyethylene (110),
one broad peak as in the paper's refinements.

Lithiated graphites are modelled with AA-stacked graphene layers in the √3 x √3 in-plane
cell (a = √3 · 2.46 Å) and a Li gallery of 3.706 Å among 3.35 Å empty ones, which puts
their (00l) lines where staging puts them; in-plane intensities are approximate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .crystal import Phase, Site, powder_pattern, pseudo_voigt

__all__ = [
    "AL_FCC",
    "CU_FCC",
    "FE_BCC",
    "GRAPHITE",
    "LIC6",
    "LIC12",
    "LIC30",
    "NMC532_LATTICE_CHARGED",
    "NMC532_LATTICE_DISCHARGED",
    "SEPARATOR",
    "BroadPeak",
    "nmc532",
    "nmc532_lattice",
    "pattern_of",
]

_LI, _C, _O, _AL, _FE, _CO, _NI, _MN, _CU = 3, 6, 8, 13, 26, 27, 28, 25, 29

_FCC = ((0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5))
_BCC = ((0, 0, 0), (0.5, 0.5, 0.5))
_R_CENTRING = ((0, 0, 0), (2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3))
# C sites of one graphene layer in the √3 x √3 cell (6k of P6/mmm with x = 1/3)
_HONEYCOMB_ROOT3 = ((1 / 3, 0), (0, 1 / 3), (2 / 3, 2 / 3), (2 / 3, 0), (0, 2 / 3), (1 / 3, 1 / 3))
_LI_GALLERY_ANGSTROM = 3.706  # interlayer distance around a Li layer (LiC6 c)
_EMPTY_GALLERY_ANGSTROM = 3.35  # graphite interlayer distance
_A_ROOT3_ANGSTROM = 4.30  # in-plane √3 cell of lithiated graphite


def _centred(positions, centring) -> tuple[tuple[float, float, float], ...]:
    return tuple(
        (float((x + dx) % 1), float((y + dy) % 1), float((z + dz) % 1))
        for x, y, z in positions
        for dx, dy, dz in centring
    )


FE_BCC = Phase(name="Fe", a_angstrom=2.8665, b_angstrom=2.8665, c_angstrom=2.8665, sites=(Site({_FE: 1.0}, _BCC),))
CU_FCC = Phase(name="Cu", a_angstrom=3.6149, b_angstrom=3.6149, c_angstrom=3.6149, sites=(Site({_CU: 1.0}, _FCC),))
AL_FCC = Phase(name="Al", a_angstrom=4.0495, b_angstrom=4.0495, c_angstrom=4.0495, sites=(Site({_AL: 1.0}, _FCC),))

GRAPHITE = Phase(
    name="graphite",
    a_angstrom=2.464,
    b_angstrom=2.464,
    c_angstrom=6.711,
    gamma_deg=120.0,
    sites=(Site({_C: 1.0}, ((0, 0, 0.25), (0, 0, 0.75), (1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.75))),),
)


def _staged_graphite(name: str, stage: int) -> Phase:
    """Li in one gallery out of ``stage``: LiC(6·stage), layers AA-stacked."""
    c = _LI_GALLERY_ANGSTROM + (stage - 1) * _EMPTY_GALLERY_ANGSTROM
    heights = [_LI_GALLERY_ANGSTROM / 2 + i * _EMPTY_GALLERY_ANGSTROM for i in range(stage)]
    layers = tuple((x, y, (h / c) % 1) for h in heights for x, y in _HONEYCOMB_ROOT3)
    return Phase(
        name=name,
        a_angstrom=_A_ROOT3_ANGSTROM,
        b_angstrom=_A_ROOT3_ANGSTROM,
        c_angstrom=c,
        gamma_deg=120.0,
        sites=(Site({_LI: 1.0}, ((0, 0, 0),)), Site({_C: 1.0}, layers)),
    )


LIC6 = _staged_graphite("LiC6", 1)
LIC12 = _staged_graphite("LiC12", 2)
LIC30 = _staged_graphite("LiC30", 5)

#: NMC532 lattice (a, c) in Å at the two ends of the cycling window, from the paper: the
#: pristine / charged cells (2.822, 14.507) and the discharged ones (2.859, 14.316).
NMC532_LATTICE_CHARGED = (2.822, 14.507)
NMC532_LATTICE_DISCHARGED = (2.859, 14.316)


def nmc532_lattice(lithiation: float | np.ndarray) -> tuple[float | np.ndarray, float | np.ndarray]:
    """NMC532 (a, c) in Å, linear between the charged (0) and discharged (1) ends."""
    (a0, c0), (a1, c1) = NMC532_LATTICE_CHARGED, NMC532_LATTICE_DISCHARGED
    return a0 + (a1 - a0) * lithiation, c0 + (c1 - c0) * lithiation


def nmc532(a_angstrom: float, c_angstrom: float, *, li_occupancy: float = 1.0, name: str = "NMC532") -> Phase:
    """LiNi0.5Mn0.3Co0.2O2, R-3m (hexagonal setting): Li 3a, transition metals 3b, O 6c."""
    z_oxygen = 0.2587
    return Phase(
        name=name,
        a_angstrom=a_angstrom,
        b_angstrom=a_angstrom,
        c_angstrom=c_angstrom,
        gamma_deg=120.0,
        sites=(
            Site({_LI: li_occupancy}, _centred(((0, 0, 0),), _R_CENTRING)),
            Site({_NI: 0.5, _MN: 0.3, _CO: 0.2}, _centred(((0, 0, 0.5),), _R_CENTRING)),
            Site({_O: 1.0}, _centred(((0, 0, z_oxygen), (0, 0, -z_oxygen)), _R_CENTRING)),
        ),
    )


@dataclass(frozen=True)
class BroadPeak:
    """A single broad line, for semi-crystalline components refined as one peak.

    Attributes
    ----------
    name : str
    d_angstrom : float
        Line position, Å.
    fwhm_deg : float
        Own width in 2θ, degrees (Scherrer broadening of small crystallites); the
        instrument's adds in quadrature.
    intensity : float
        Integrated intensity per unit volume, in the units of :func:`~.crystal.reflections`.
    """

    name: str
    d_angstrom: float
    fwhm_deg: float
    intensity: float

    def pattern(self, two_theta_deg: np.ndarray, wavelength_angstrom: float, instrument_fwhm_deg: float) -> np.ndarray:
        """The line on a 2θ axis, its own width and the instrument's added in quadrature."""
        center = math.degrees(2 * math.asin(wavelength_angstrom / (2 * self.d_angstrom)))
        width = math.hypot(self.fwhm_deg, instrument_fwhm_deg)
        return self.intensity * pseudo_voigt(two_theta_deg, center, width, 0.5)


#: Polyethylene separator: its (110) line (d = 4.11 Å), 15 nm crystallites (Scherrer width
#: 0.05° at 103.5 keV), one peak as the paper refined it. Intensity of the order of the
#: graphite (002) line per unit volume.
SEPARATOR = BroadPeak(name="separator", d_angstrom=4.11, fwhm_deg=0.05, intensity=2.0e-3)


def pattern_of(
    component: Phase | BroadPeak, two_theta_deg: np.ndarray, wavelength_angstrom: float, fwhm_deg: float
) -> np.ndarray:
    """1D pattern of a crystalline phase or a broad line on a 2θ axis (degrees)."""
    if isinstance(component, BroadPeak):
        return component.pattern(two_theta_deg, wavelength_angstrom, fwhm_deg)
    return powder_pattern(component, two_theta_deg, wavelength_angstrom, fwhm_deg=fwhm_deg)
