"""Every map of one reconstruction: :func:`compute_maps` → :class:`XrdctMaps`.

Window intensities, the phase decomposition and the lattice peaks of a
:class:`~.config.MapsConfig`, where a lattice peak is fitted after the fitted patterns of the
*other* phases are subtracted (overlapping lines of a second phase, e.g. an inactive NMC with
a fixed lattice, would bias the position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import MapsConfig
from .intensities import window_intensity
from .peaks import PeakFit, fit_peak, lattice_from_center
from .phases import PhaseDecomposition, decompose_phases

__all__ = ["XrdctMaps", "compute_maps"]


@dataclass(frozen=True)
class XrdctMaps:
    """The maps of one reconstruction, each (n_y, n_x).

    Attributes
    ----------
    intensities : dict of str to ndarray
        :func:`window_intensity` per :class:`PeakWindow`.
    phases : PhaseDecomposition or None
    lattices : dict of str to ndarray
        Lattice parameter per :class:`LatticePeak`, Å (NaN where the fit is invalid).
    peak_fits : dict of str to PeakFit
    """

    intensities: dict[str, np.ndarray]
    phases: PhaseDecomposition | None
    lattices: dict[str, np.ndarray]
    peak_fits: dict[str, PeakFit]


def compute_maps(
    reconstruction: np.ndarray, radial_deg: np.ndarray, config: MapsConfig, *, wavelength_angstrom: float
) -> XrdctMaps:
    """Every map :class:`MapsConfig` asks for.

    Parameters
    ----------
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
        Not modified.
    radial_deg : ndarray of float, shape (n_radial,)
    config : MapsConfig
    wavelength_angstrom : float
        Beam wavelength (the geometry's), Å.

    Returns
    -------
    XrdctMaps
    """
    if not wavelength_angstrom > 0:
        raise ValueError(f"wavelength_angstrom must be > 0, got {wavelength_angstrom!r}")
    intensities = {w.name: window_intensity(reconstruction, radial_deg, w) for w in config.windows}
    phases = None
    if config.phases:
        phases = decompose_phases(reconstruction, radial_deg, config.phases, range_deg=config.phase_range_deg)
    lattices, fits = {}, {}
    for peak in config.lattice_peaks:
        volume = reconstruction
        if phases is not None and peak.phase is not None:
            volume = reconstruction - phases.fitted_without(peak.phase)
        fit = fit_peak(volume, radial_deg, peak.window_deg, eta=peak.eta, fwhm_guess_deg=peak.fwhm_guess_deg,
                       min_area_fraction=peak.min_area_fraction)  # fmt: skip
        fits[peak.name] = fit
        lattices[peak.name] = lattice_from_center(fit.center_deg, wavelength_angstrom, peak.lattice_per_d).astype(
            np.float32
        )
    return XrdctMaps(intensities=intensities, phases=phases, lattices=lattices, peak_fits=fits)
