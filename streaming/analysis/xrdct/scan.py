"""One zigzag scan of an XRD-CT run: patterns placed by index, lines back-projected live.

- :class:`XrdctScan`: the sinogram of one scan filled pattern by pattern, each completed line
  back-projected, and at the end the final centre, reconstruction and maps.
- :func:`scan_shape`, :func:`scan_axes`: the zigzag's shape and axes from a start document.

Centre of rotation. FBP needs it before the first line is back-projected, and the data
only give it reliably once the lines span a good part of 180°. With ``center_px`` set,
every line is back-projected as it completes. With ``center_px=None`` the live
reconstruction waits until the first half of the lines (by angle) are in, starts from a
preliminary estimate (centre-of-mass sinusoid of those lines, whatever order they completed
in) and back-projects every complete line and every later one; at the
end the centre is estimated again from all lines and, if it moved by more than
``recenter_tolerance_px`` (or the live image held only some channels), the final
reconstruction is made again in one batch with the final centre. Otherwise the live image
*is* the final one (incremental and batch FBP are the same sums; they differ by float32
summation order only). The file holds the centre the reconstruction was made with
(``reconstruction_center_px``) beside the final estimate.

Where the final work runs. A scan finishes through a :class:`ScanReduction`: here
(:data:`LOCAL_REDUCTION`), or on workers (Dask: per block of radial channels, per block of
voxels). With ``back_project_live=False`` nothing is back-projected while the lines arrive
(nobody is watching a reprocessing); the scan keeps the order and centre the live image
would have had and has the reduction make that image at the end, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from streaming.errors import ConfigError
from streaming.processing.fbp import IncrementalFBP, reconstruct
from streaming.processing.maps import MapsConfig, XrdctMaps, compute_maps
from streaming.processing.sinogram import (
    SinogramBuilder,
    estimate_center_of_rotation,
    interpolate_missing,
    subtract_air,
)

from .config import XrdctAnalysisConfig

__all__ = ["LOCAL_REDUCTION", "ScanReduction", "XrdctScan", "scan_axes", "scan_shape"]


class ScanReduction(Protocol):
    """Where a finished scan's reconstruction and maps are made."""

    def reconstruct(self, sinogram: np.ndarray, angles_deg: np.ndarray, *, center_px: float, filter_name: str,
                    line_order: Sequence[int] | None) -> np.ndarray:  # fmt: skip
        """As :func:`~streaming.processing.fbp.reconstruct`."""
        ...

    def maps(self, reconstruction: np.ndarray, radial_deg: np.ndarray, config: MapsConfig, *,
             wavelength_angstrom: float) -> XrdctMaps:  # fmt: skip
        """As :func:`~streaming.processing.maps.compute_maps`."""
        ...


class _LocalReduction:
    """Reconstruction and maps in this process."""

    def reconstruct(self, sinogram: np.ndarray, angles_deg: np.ndarray, *, center_px: float, filter_name: str,
                    line_order: Sequence[int] | None) -> np.ndarray:  # fmt: skip
        return reconstruct(sinogram, angles_deg, center_px=center_px, filter_name=filter_name, line_order=line_order)

    def maps(self, reconstruction: np.ndarray, radial_deg: np.ndarray, config: MapsConfig, *,
             wavelength_angstrom: float) -> XrdctMaps:  # fmt: skip
        return compute_maps(reconstruction, radial_deg, config, wavelength_angstrom=wavelength_angstrom)


#: Reconstruction and maps in this process (the live path's).
LOCAL_REDUCTION: ScanReduction = _LocalReduction()


def scan_shape(start: dict[str, Any]) -> tuple[int, int]:
    """``(n_angles, n_translations)`` of the zigzag, from the start document's ``shape``."""
    shape = start.get("shape")
    if not (isinstance(shape, list | tuple) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
        raise ConfigError(f"xrdct_analysis: start document shape must be [n_angles, n_translations], got {shape!r}")
    return int(shape[0]), int(shape[1])


def scan_axes(start: dict[str, Any], n_angles: int, n_translations: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotation angles (deg) and translation positions (mm) of the zigzag, as the plan makes them."""
    angle_range, translation_range = start.get("extents", [[0.0, 180.0], [0.0, float(n_translations - 1)]])
    angles_deg = np.linspace(float(angle_range[0]), float(angle_range[1]), n_angles, endpoint=False)
    translations_mm = np.linspace(float(translation_range[0]), float(translation_range[1]), n_translations)
    return angles_deg, translations_mm


class XrdctScan:
    """One zigzag scan of a run: patterns placed by index, each completed line back-projected,
    and at the end the final centre, reconstruction and maps (see the module docstring).

    Parameters
    ----------
    index : int
        The scan's index in its run (the frames' ``scan`` index; 0 for a single scan).
    config : XrdctAnalysisConfig
    angles_deg, translations_mm : ndarray
        The zigzag's rotation angles (deg) and translation positions (mm).
    back_project_live : bool
        Back-project each line as it completes (the live image); False to make that image
        at the end only (see the module docstring).
    """

    def __init__(self, index: int, config: XrdctAnalysisConfig, angles_deg: np.ndarray,
                 translations_mm: np.ndarray, *, back_project_live: bool = True) -> None:  # fmt: skip
        self.index = index
        self.back_project_live = back_project_live
        self.config = config
        self.angles_deg, self.translations_mm = angles_deg, translations_mm
        self.n_angles, self.n_translations = angles_deg.size, translations_mm.size
        self.sinogram = SinogramBuilder(
            self.n_angles, self.n_translations, config.integration.n_radial, angles_deg=angles_deg,
            air_edge_px=config.air_edge_px,
        )  # fmt: skip
        self.fbp: IncrementalFBP | None = None
        self.preliminary_center_px: float | None = None
        self.live_center_px: float | None = None  # the live image's centre, once it is started
        self.line_order: list[int] = []  # lines in the order the live image sums them
        if config.center_px is not None:
            self._start_live(float(config.center_px))
        self.time_sum_s = 0.0  # of the frames' time stamps: the scan's mean time
        self.center_px: float | None = None
        self.reconstruction_center_px: float | None = None
        self.reconstruction: np.ndarray | None = None
        self.maps: XrdctMaps | None = None
        self.reconstructed_live = False
        self.partial = False  # the run ended before the scan did: not reconstructed

    @property
    def mean_time_s(self) -> float:
        """Mean time stamp of the scan's frames (s since the epoch)."""
        return self.time_sum_s / self.sinogram.n_filled if self.sinogram.n_filled else math.nan

    def add(
        self, angle: int, translation: int, pattern: np.ndarray, timestamp_s: float, monitor: float | None = None
    ) -> None:
        """Place one pattern (divided by the beam ``monitor`` reading, if given); back-project
        its line once the line is complete."""
        self.time_sum_s += timestamp_s
        for line in self.sinogram.add(angle, translation, pattern, monitor=monitor):
            self._line_done(line)

    def _start_live(self, center_px: float) -> None:
        self.live_center_px = center_px
        if self.back_project_live:
            channels = None if self.config.live_channels is None else np.array(self.config.live_channels)
            self.fbp = IncrementalFBP(self.n_translations, self.angles_deg, center_px=center_px, channels=channels,
                                      filter_name=self.config.filter_name)  # fmt: skip

    def _add_line(self, angle_index: int) -> None:
        self.line_order.append(angle_index)
        if self.fbp is not None:
            self.fbp.add_line(angle_index, self.sinogram.air_corrected_line(angle_index))

    def _line_done(self, angle_index: int) -> None:
        if self.live_center_px is None:
            first_half = np.arange(min(self.n_angles, max(3, self.n_angles // 2)))
            if not self.sinogram.lines_complete(first_half):
                return
            # the first half of the lines by angle span ~90°: enough for a preliminary centre
            # (see the module docstring), and the same lines whatever order lines completed in
            # (frames fetched late from the recorder's file), so live equals replayed
            self.preliminary_center_px = self.sinogram.estimate_center_px(first_half)
            self._start_live(self.preliminary_center_px)
            for line in self.sinogram.completed_lines:
                self._add_line(int(line))
            return
        self._add_line(angle_index)

    @property
    def n_interpolated(self) -> int:
        """Patterns that never arrived, interpolated from their neighbours when reconstructed."""
        return self.n_angles * self.n_translations - self.sinogram.n_filled

    def corrected_sinogram(self) -> np.ndarray:
        """The sinogram with missing patterns interpolated (:func:`interpolate_missing`) and
        the air scatter of its edges subtracted: what is reconstructed."""
        sinogram = self.sinogram.sinogram()
        if self.n_interpolated:
            sinogram = interpolate_missing(sinogram, self.sinogram.filled)
        return subtract_air(sinogram, self.config.air_edge_px) if self.config.air_edge_px else sinogram

    def finish(self, radial_deg: np.ndarray, wavelength_angstrom: float,
               reduction: ScanReduction = LOCAL_REDUCTION) -> None:  # fmt: skip
        """Final centre, reconstruction (the live one when it used that centre) and maps,
        those made by ``reduction`` where they are not the live image."""
        corrected = self.corrected_sinogram()
        if self.config.center_px is not None:
            self.center_px = float(self.config.center_px)
        else:
            self.center_px = estimate_center_of_rotation(corrected.sum(axis=2), self.angles_deg)
        # a pattern taken again (a line re-run after a pause) replaced one the live image holds
        live_is_final = (
            self.live_center_px is not None and len(self.line_order) == self.n_angles
            and self.config.live_channels is None
            and abs(self.live_center_px - self.center_px) <= self.config.recenter_tolerance_px
            and not self.sinogram.n_replaced
        )  # fmt: skip
        if live_is_final and self.fbp is not None:
            self.reconstruction = self.fbp.image()
        else:  # the live image made now (the same sums), or one with the final centre
            self.reconstruction = reduction.reconstruct(
                corrected, self.angles_deg, center_px=self.live_center_px if live_is_final else self.center_px,
                filter_name=self.config.filter_name, line_order=self.line_order if live_is_final else None,
            )  # fmt: skip
        self.reconstructed_live = live_is_final and self.fbp is not None
        self.reconstruction_center_px = self.live_center_px if live_is_final else self.center_px
        self.fbp = None  # its image is the reconstruction now, or was replaced: free it
        self.maps = reduction.maps(self.reconstruction, radial_deg, self.config.maps,
                                   wavelength_angstrom=wavelength_angstrom)  # fmt: skip

    def finish_partial(self) -> None:
        """The run ended (aborted, failed, stopped) before this scan did: its patterns as they
        are, nothing interpolated, no reconstruction or maps made of a fraction of a scan."""
        self.partial, self.fbp = True, None

    @property
    def fraction_complete(self) -> float:
        """Fraction of the scan's patterns placed."""
        return self.sinogram.n_filled / (self.n_angles * self.n_translations)

    def mean_lattices(self) -> dict[str, float]:
        """Each lattice map's mean over the voxels where its peak was fitted (Å); none for a partial scan."""
        if self.maps is None:
            return {}
        return {name: float(np.nanmean(image)) if np.isfinite(image).any() else math.nan
                for name, image in self.maps.lattices.items()}  # fmt: skip

    def results(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """What is written per scan: dataset path -> (data, attributes); of a partial scan, its
        sinogram and which positions it holds only."""
        maps = self.maps
        if self.partial:
            return {"sinogram": (self.sinogram.sinogram(), {"axes": "angles,translations,radial",
                                                            "note": "partial: the run ended before the scan"}),
                    "filled": (self.sinogram.filled.astype(np.uint8), {})}  # fmt: skip
        results: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
            "sinogram": (self.sinogram.sinogram(), {"axes": "angles,translations,radial",
                                                    "note": "integrated patterns as placed, before air subtraction"}),
            "filled": (self.sinogram.filled.astype(np.uint8), {}),
            "reconstruction": (self.reconstruction, {"axes": "y,x,radial",
                                                     "units": "intensity per translation step of path"}),
        }  # fmt: skip
        for name, image in maps.intensities.items():
            results[f"intensity_maps/{name}"] = (image, {"units": "intensity x deg"})
        if maps.phases is not None:
            for name, image in maps.phases.weights.items():
                results[f"phase_maps/{name}"] = (image, {"units": "reference units (∝ volume fraction)"})
            results["phase_maps_residual"] = (maps.phases.relative_residual, {"units": "1"})
        for peak in self.config.maps.lattice_peaks:
            fit = maps.peak_fits[peak.name]
            results[f"lattice_maps/{peak.name}"] = (maps.lattices[peak.name], {
                "units": "angstrom", "window_deg": np.array(peak.window_deg), "lattice_per_d": peak.lattice_per_d,
                "eta": peak.eta})  # fmt: skip
            results[f"peak_fits/{peak.name}/center"] = (fit.center_deg, {"units": "deg"})
            results[f"peak_fits/{peak.name}/fwhm"] = (fit.fwhm_deg, {"units": "deg"})
            results[f"peak_fits/{peak.name}/area"] = (fit.area, {"units": "intensity x deg"})
        return results
