"""Per-voxel maps from an XRD-CT reconstruction: peak intensities, phases and lattices.

- :class:`PeakWindow`: a 2θ window with side windows for a linear background;
  :func:`window_intensity` gives each voxel's background-subtracted integrated intensity.
- :func:`fit_peak`: one pseudo-Voigt plus a linear background fitted in a window, for every
  voxel at once (Levenberg-Marquardt, batched 5 x 5 normal equations) → :class:`PeakFit`.
- :class:`PhaseReference` and :func:`decompose_phases`: non-negative least squares of every
  voxel pattern on reference patterns (a phase may have several components, e.g. the two
  ends of a lattice range, whose weights are summed) → :class:`PhaseDecomposition`.
- :class:`LatticePeak` and :func:`lattice_from_center`: peak position → d-spacing (Bragg, λ
  of the beam) → lattice parameter (``lattice = lattice_per_d · d``; NMC (003): c = 3 d).
- :class:`MapsConfig` and :func:`compute_maps`: all of the above, where a lattice peak is
  fitted after the fitted patterns of the *other* phases are subtracted (overlapping lines
  of a second phase, e.g. an inactive NMC with a fixed lattice, would bias the position);
  or in blocks of image rows mapped anywhere (:func:`compute_voxel_maps`) and joined
  (:func:`join_maps`), the same maps.

Axes: a reconstruction is ``(n_y, n_x, n_radial)`` (one voxel's pattern contiguous, as
:mod:`streaming.processing.fbp` returns it); maps are ``(n_y, n_x)``. The radial axis is 2θ
in degrees (the unit of the integration), converted to radians only inside the Bragg relation.

Modules:

- :mod:`.config`: the validated configuration (:class:`PeakWindow`, :class:`LatticePeak`,
  :class:`PhaseReference`, :class:`MapsConfig`).
- :mod:`.voxels`: the reconstruction's layout, checked and flattened to voxel patterns.
- :mod:`.intensities`: :func:`window_intensity`.
- :mod:`.peaks`: the batched pseudo-Voigt fit (:func:`fit_peak`, :class:`PeakFit`) and
  :func:`lattice_from_center`.
- :mod:`.phases`: the batched NNLS (:func:`decompose_phases`, :class:`PhaseDecomposition`).
- :mod:`.compute`: every map of one reconstruction (:func:`compute_maps`, :class:`XrdctMaps`).
"""

from .compute import XrdctMaps, compute_maps, compute_voxel_maps, join_maps
from .config import LatticePeak, MapsConfig, PeakWindow, PhaseReference
from .intensities import window_intensity
from .peaks import PeakFit, fit_peak, lattice_from_center
from .phases import PhaseDecomposition, decompose_phases

__all__ = [
    "LatticePeak",
    "MapsConfig",
    "PeakFit",
    "PeakWindow",
    "PhaseDecomposition",
    "PhaseReference",
    "XrdctMaps",
    "compute_maps",
    "compute_voxel_maps",
    "decompose_phases",
    "fit_peak",
    "join_maps",
    "lattice_from_center",
    "window_intensity",
]
