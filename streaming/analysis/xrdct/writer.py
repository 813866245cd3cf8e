"""The XRD-CT sidecar file ``<run>.xrdct.h5``, linked from the run file as ``/entry/xrdct``.

- :func:`write_run`: the run's settings (as attributes) and axes, once, with its first scan.
- :func:`write_scan`: one scan's results, as they are (a single scan) or as one row of
  datasets with a leading scan axis (an operando series). A partial scan (the run ended
  first) writes its sinogram and ``filled`` only, with ``complete`` false and its
  ``fraction_complete``: in a series, the reconstruction and map datasets then stop a row short.
- :func:`write_series`: a series' columns (one value per scan) and the potentiostat's readings.

Datasets of three or more dimensions (sinograms, reconstructions) are compressed with gzip
and the shuffle (:data:`~streaming.store.chunks.RESULTS_COMPRESSION`): any HDF5 reader opens
them, no plugin needed.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from streaming.store.chunks import RESULTS_COMPRESSION, results_chunks

from .config import XrdctAnalysisConfig
from .scan import XrdctScan

__all__ = ["write_run", "write_scan", "write_series"]


_SERIES_UNITS = {"time": "s", "voltage": "V", "capacity": "mAh", "center_of_rotation_px": "px"}


def write_run(
    group: h5py.Group,
    config: XrdctAnalysisConfig,
    start: dict[str, Any],
    *,
    is_series: bool,
    wavelength_angstrom: float,
    radial_deg: np.ndarray,
    angles_deg: np.ndarray,
    translations_mm: np.ndarray,
) -> None:
    """The run's settings and axes into ``group``: 2θ (deg), rotation angles (deg) and
    translations (mm) of the zigzag, and the reduction parameters as attributes."""
    step_mm = float(abs(translations_mm[1] - translations_mm[0])) if translations_mm.size > 1 else 0.0
    group.attrs.update(config.attributes())
    group.attrs.update(
        NX_class="NXprocess", run_uid=start["uid"], plan_name=str(start.get("plan_name", "")),
        center_source="configured" if config.center_px is not None else "estimated",
        wavelength_angstrom=wavelength_angstrom, pixel_size_mm=step_mm,
        scan_axis="first axis of every per-scan dataset" if is_series else "none (a single scan)",
    )  # fmt: skip
    _dataset(group, "radial", radial_deg, units="deg", long_name="2θ")
    _dataset(group, "angles", angles_deg, units="deg")
    _dataset(group, "translations", translations_mm, units="mm")


def write_scan(group: h5py.Group, scan: XrdctScan, position: int | None) -> None:
    """A scan's results into ``group``: as they are (``position`` None), or as row
    ``position`` of datasets with a leading scan axis (created at the first)."""
    scalars = {"center_of_rotation_px": _or_nan(scan.center_px),
               "preliminary_center_px": _or_nan(scan.preliminary_center_px),
               "reconstruction_center_px": _or_nan(scan.reconstruction_center_px),
               "reconstructed_live": scan.reconstructed_live, "patterns_placed": scan.sinogram.n_filled,
               "patterns_replaced": scan.sinogram.n_replaced,
               "patterns_interpolated": 0 if scan.partial else scan.n_interpolated,
               "complete": not scan.partial, "fraction_complete": scan.fraction_complete}  # fmt: skip
    if position is None:
        group.attrs.update(scalars)
        for name, (data, attrs) in scan.results().items():
            _dataset(group, name, data, **attrs)
        return
    scalar_arrays = {name: (np.asarray(value), {"units": "px"} if name.endswith("_px") else {})
                     for name, value in scalars.items()}  # fmt: skip
    for name, (values, attrs) in {**scan.results(), **scalar_arrays}.items():
        data = np.asarray(values)
        if name not in group:
            dataset = group.create_dataset(
                name, shape=(0, *data.shape), maxshape=(None, *data.shape), dtype=data.dtype,
                chunks=(1, *results_chunks(data.shape, data.dtype.itemsize)),
                **(RESULTS_COMPRESSION if data.ndim >= 3 else {}),
            )  # fmt: skip
            dataset.attrs.update(attrs)
        dataset = group[name]
        dataset.resize(position + 1, axis=0)
        dataset[position] = data


def write_series(group: h5py.Group, columns: dict[str, np.ndarray], readings: dict[str, np.ndarray]) -> None:
    """A series' ``columns`` (one value per scan; ``mean_<lattice>`` in Å) into ``group``,
    replacing those already there, and the potentiostat's ``readings`` into its
    ``potentiostat`` group."""
    for name, values in columns.items():
        if name in group:
            del group[name]
        unit = _SERIES_UNITS.get(name, "angstrom" if name.startswith("mean_") else "")
        _dataset(group, name, values, units=unit)
    potentiostat = group.require_group("potentiostat")
    potentiostat.attrs["NX_class"] = "NXcollection"
    for key, values in readings.items():
        if key not in potentiostat:
            potentiostat.create_dataset(key, data=values)


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def _dataset(group: h5py.Group, name: str, data: np.ndarray, **attrs: Any) -> h5py.Dataset:
    data = np.asarray(data)
    if data.ndim >= 3:
        dataset = group.create_dataset(name, data=data, chunks=results_chunks(data.shape, data.dtype.itemsize),
                                       **RESULTS_COMPRESSION)  # fmt: skip
    else:
        dataset = group.create_dataset(name, data=data)
    dataset.attrs.update(attrs)
    return dataset
