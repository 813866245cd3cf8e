"""Every map of one reconstruction: :func:`compute_maps` → :class:`XrdctMaps`.

Window intensities, the phase decomposition and the lattice peaks of a
:class:`~.config.MapsConfig`, where a lattice peak is fitted after the fitted patterns of the
*other* phases are subtracted (overlapping lines of a second phase, e.g. an inactive NMC with
a fixed lattice, would bias the position).

Every map is a voxel's own except the lattice fits' area threshold (a fraction of the largest
area in the image). So an image can be mapped in blocks of rows anywhere
(:func:`compute_voxel_maps`, e.g. on Dask workers) and joined (:func:`join_maps`):
``join_maps([compute_voxel_maps(r) for r in blocks])`` is :func:`compute_maps` of the whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import MapsConfig
from .intensities import window_intensity
from .peaks import PeakFit, fit_peak, join_peak_fits, lattice_from_center
from .phases import PhaseDecomposition, decompose_phases, join_phase_decompositions

__all__ = ["XrdctMaps", "compute_maps", "compute_voxel_maps", "join_maps"]


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
    return join_maps([compute_voxel_maps(reconstruction, radial_deg, config, wavelength_angstrom=wavelength_angstrom)],
                     config)  # fmt: skip


def compute_voxel_maps(
    reconstruction: np.ndarray, radial_deg: np.ndarray, config: MapsConfig, *, wavelength_angstrom: float
) -> XrdctMaps:
    """The maps of a block of image rows, each voxel on its own: the lattice fits' area
    threshold (over the whole image) is left to :func:`join_maps`. Parameters as :func:`compute_maps`."""
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
                       min_area_fraction=0.0)  # fmt: skip
        fits[peak.name] = fit
        lattices[peak.name] = lattice_from_center(fit.center_deg, wavelength_angstrom, peak.lattice_per_d).astype(
            np.float32
        )
    return XrdctMaps(intensities=intensities, phases=phases, lattices=lattices, peak_fits=fits)


def join_maps(parts: list[XrdctMaps], config: MapsConfig) -> XrdctMaps:
    """The maps of consecutive blocks of rows (:func:`compute_voxel_maps`) as the whole image's,
    with each lattice peak's ``min_area_fraction`` applied over the whole image."""
    if not parts:
        raise ValueError("need the maps of at least one block of rows")
    fits = {peak.name: join_peak_fits([part.peak_fits[peak.name] for part in parts]).thresholded(peak.min_area_fraction)
            for peak in config.lattice_peaks}  # fmt: skip
    lattices = {name: np.where(fits[name].valid, np.concatenate([part.lattices[name] for part in parts]), np.nan)
                .astype(np.float32) for name in fits}  # fmt: skip
    return XrdctMaps(
        intensities={name: np.concatenate([part.intensities[name] for part in parts]) for name in parts[0].intensities},
        phases=None if parts[0].phases is None else join_phase_decompositions([part.phases for part in parts]),
        lattices=lattices,
        peak_fits=fits,
    )
