"""Live XRD-CT analysis: frames → patterns → sinogram → reconstruction → maps → ``/entry/xrdct``.

- :class:`XrdctAnalysisConfig`: every reduction parameter (recorded as attributes).
- :class:`XrdctAnalysis`: the :class:`~streaming.analysis.consumer.Analysis` of one zigzag run. It
  accepts raw detector frames (stream ``pilatus``, integrated here) or patterns integrated
  by workers (stream ``pilatus.integrated``), places them by their angle/translation
  indices, back-projects each completed line, and at the end writes the sidecar file that
  the run file links as ``/entry/xrdct`` plus a PNG summary.
- :class:`IntegrationWorker`: ``make_analysis`` for worker consumers that take a share of the
  frames (``frame_pattern="pull"``) and republish each as its 1D pattern, same run, same
  indices and positions, on a PUSH publisher that fans in to the builder.
- :func:`xrdct_analysis_factory`: ``make_analysis`` for the builder (accepts xrdct_zigzag runs).

Scaling by PUSH/PULL::

    detector ──PUB──► recorder
             └─PUSH─► worker 1..N (Consumer pull, IntegrationWorker) ──PUSH──┐
                                                                             ▼ PULL (bound)
                                          builder Consumer(frame_bind=True, XrdctAnalysis)

The builder's consumer binds its PULL socket and the workers connect to it, so any number
of workers on any host feed one builder; patterns are placed by index, so their order does
not matter. A pattern is ``n_radial`` floats instead of a frame: the builder's own work is
then placement and back-projection only.

Centre of rotation. FBP needs it before the first line is back-projected, and the data
only give it reliably once the lines span a good part of 180°. With ``center_px`` set,
every line is back-projected as it completes. With ``center_px=None`` the live
reconstruction waits until half of the lines are in, starts from a preliminary estimate
(centre-of-mass sinusoid of those lines) and back-projects them and every later line; at the
end the centre is estimated again from all lines and, if it moved by more than
``recenter_tolerance_px`` (or the live image held only some channels), the final
reconstruction is made again in one batch with the final centre. Otherwise the live image
*is* the final one (incremental and batch FBP are the same sums; they differ by float32
summation order only). Either way the file holds a reconstruction made with the recorded
centre.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from streaming.analysis.readings import PotentiostatReadings
from streaming.errors import ConfigError
from streaming.processing.fbp import FBP_FILTERS, IncrementalFBP, reconstruct
from streaming.processing.integration import AzimuthalReducer, IntegrationConfig
from streaming.processing.maps import MapsConfig, XrdctMaps, compute_maps
from streaming.processing.sinogram import (
    SinogramBuilder,
    estimate_center_of_rotation,
    interpolate_missing,
    subtract_air,
)
from streaming.store.chunks import compression_filter
from streaming.store.recorder import run_file_name
from streaming.store.runfile import analysis_file_name
from streaming.wire.protocol import Frame
from streaming.wire.transport import FramePublisher

__all__ = ["IntegrationWorker", "XrdctAnalysis", "XrdctAnalysisConfig", "XrdctScan", "xrdct_analysis_factory"]

logger = logging.getLogger(__name__)

INTEGRATED_SUFFIX = ".integrated"
SERIES_PLANS = ("operando_xrdct",)  # zigzag scans repeated in one run, frames tagged with "scan"
ZIGZAG_PLANS = ("xrdct_zigzag", *SERIES_PLANS)


@dataclass(frozen=True, kw_only=True, eq=False)
class XrdctAnalysisConfig:
    """Settings of the XRD-CT analysis; checked when built.

    Attributes
    ----------
    out_dir : Path
        Where the run files are: the sidecar ``<run>.xrdct.h5`` and ``<run>.xrdct.png`` go
        next to them.
    integration : IntegrationConfig
        Azimuthal reduction (trimmed mean (5, 95) by default).
    poni_path : Path or None
        pyFAI PONI file; None to take the geometry from the start document's ``geometry``.
    mask : ndarray of bool, detector shape, or None
        Pixels to exclude (True); None for the detector's own (gaps). Negative pixel values
        are skipped in every frame anyway.
    detector : str
        Frame stream of the area detector.
    center_px : float or None
        Centre of rotation, translation-index units; None to estimate it from the data.
    live_channels : tuple of int or None
        Radial channels reconstructed live; None for all.
    filter_name : str
        FBP filter, one of :data:`~streaming.processing.fbp.FBP_FILTERS`.
    air_edge_px : int
        Translations at each edge of a line taken as air scatter and subtracted (0: none).
    monitor : str or None
        Beam monitor (an ion chamber's or diode's reading recorded with each frame, in its
        header's ``positions``) each pattern is divided by; None for none. A frame without a
        positive reading is rejected (counted; its pattern is then interpolated).
    recenter_tolerance_px : float
        Largest change of the estimated centre that keeps the live reconstruction.
    maps : MapsConfig
        Windows, phase references and lattice peaks.
    figure : bool
        Write a PNG summary.
    figure_channel_deg : float or None
        2θ of the reconstruction shown in the figure; None for the strongest channel.
    """

    out_dir: Path
    integration: IntegrationConfig = field(default_factory=lambda: IntegrationConfig(n_radial=1000))
    poni_path: Path | None = None
    mask: np.ndarray | None = None
    detector: str = "pilatus"
    center_px: float | None = None
    live_channels: tuple[int, ...] | None = None
    filter_name: str = "ram-lak"
    air_edge_px: int = 2
    monitor: str | None = None
    recenter_tolerance_px: float = 0.05
    maps: MapsConfig = field(default_factory=MapsConfig)
    figure: bool = True
    figure_channel_deg: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not isinstance(self.integration, IntegrationConfig):
            raise ConfigError(f"xrdct_analysis.integration: must be an IntegrationConfig, got {self.integration!r}")
        if self.poni_path is not None:
            object.__setattr__(self, "poni_path", Path(self.poni_path))
            if not self.poni_path.is_file():
                raise ConfigError(f"xrdct_analysis.poni_path: no such file {str(self.poni_path)!r}")
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(bool)
            if mask.ndim != 2:
                raise ConfigError(f"xrdct_analysis.mask: must be 2D, got shape {mask.shape}")
            object.__setattr__(self, "mask", mask)
        if not (isinstance(self.detector, str) and self.detector and "." not in self.detector):
            raise ConfigError(f"xrdct_analysis.detector: must be a stream name without '.', got {self.detector!r}")
        if self.center_px is not None and not (
            isinstance(self.center_px, int | float) and math.isfinite(self.center_px)
        ):
            raise ConfigError(f"xrdct_analysis.center_px: must be None or a finite number, got {self.center_px!r}")
        if self.live_channels is not None:
            channels = tuple(int(c) for c in self.live_channels)
            if not channels or min(channels) < 0 or max(channels) >= self.integration.n_radial:
                raise ConfigError(
                    f"xrdct_analysis.live_channels: need indices within [0, {self.integration.n_radial}), "
                    f"got {self.live_channels!r}"
                )
            object.__setattr__(self, "live_channels", channels)
        if self.filter_name not in FBP_FILTERS:
            raise ConfigError(
                f"xrdct_analysis.filter_name: must be one of {', '.join(FBP_FILTERS)}, got {self.filter_name!r}"
            )
        if not (isinstance(self.air_edge_px, int) and self.air_edge_px >= 0):
            raise ConfigError(f"xrdct_analysis.air_edge_px: must be an int >= 0, got {self.air_edge_px!r}")
        if self.monitor is not None and not (isinstance(self.monitor, str) and self.monitor):
            raise ConfigError(f"xrdct_analysis.monitor: must be None or a reading's name, got {self.monitor!r}")
        if not self.recenter_tolerance_px >= 0:
            raise ConfigError(f"xrdct_analysis.recenter_tolerance_px: must be >= 0, got {self.recenter_tolerance_px!r}")
        if not isinstance(self.maps, MapsConfig):
            raise ConfigError(f"xrdct_analysis.maps: must be a MapsConfig, got {self.maps!r}")

    def integrator(self, start: dict[str, Any]):
        """The run's pyFAI ``AzimuthalIntegrator``: the PONI file's geometry, else the start document's."""
        import pyFAI

        if self.poni_path is not None:
            return pyFAI.load(str(self.poni_path))
        if start.get("geometry"):
            return pyFAI.load(dict(start["geometry"]))
        raise ConfigError("xrdct_analysis.poni_path: needed, the start document carries no geometry")

    def reducer(self, start: dict[str, Any]) -> AzimuthalReducer:
        """The run's azimuthal reducer (geometry as :meth:`integrator`)."""
        return AzimuthalReducer.from_integrator(self.integrator(start), None, self.mask, self.integration)

    def attributes(self) -> dict[str, Any]:
        """The settings as HDF5 attributes (centre of rotation aside: it is the run's)."""
        integration = self.integration
        return {
            "integration_method": integration.method,
            "trim_percentiles": np.array(integration.percentiles),
            "n_radial": integration.n_radial,
            "polarization_factor": np.nan if integration.polarization_factor is None
            else integration.polarization_factor,
            "solid_angle_correction": integration.solid_angle,
            "radial_range_deg": np.array(integration.radial_range_deg or (np.nan, np.nan)),
            "radial_unit": integration.unit,
            "filter_name": self.filter_name,
            "air_edge_px": self.air_edge_px,
            "monitor": self.monitor or "",
            "live_channels": np.array(self.live_channels if self.live_channels is not None else [], dtype=np.int64),
            "poni_path": "" if self.poni_path is None else str(self.poni_path),
            "mask": "configured" if self.mask is not None else "detector gaps and negative pixels",
        }  # fmt: skip


def _scan_shape(start: dict[str, Any]) -> tuple[int, int]:
    shape = start.get("shape")
    if not (isinstance(shape, list | tuple) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
        raise ConfigError(f"xrdct_analysis: start document shape must be [n_angles, n_translations], got {shape!r}")
    return int(shape[0]), int(shape[1])


def _scan_axes(start: dict[str, Any], n_angles: int, n_translations: int) -> tuple[np.ndarray, np.ndarray]:
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
    """

    def __init__(self, index: int, config: XrdctAnalysisConfig, angles_deg: np.ndarray,
                 translations_mm: np.ndarray) -> None:  # fmt: skip
        self.index = index
        self.config = config
        self.angles_deg, self.translations_mm = angles_deg, translations_mm
        self.n_angles, self.n_translations = angles_deg.size, translations_mm.size
        self.sinogram = SinogramBuilder(
            self.n_angles, self.n_translations, config.integration.n_radial, angles_deg=angles_deg,
            air_edge_px=config.air_edge_px,
        )  # fmt: skip
        self.fbp: IncrementalFBP | None = None
        self.preliminary_center_px: float | None = None
        if config.center_px is not None:
            self._start_fbp(float(config.center_px))
        self.time_sum_s = 0.0  # of the frames' time stamps: the scan's mean time
        self.center_px: float | None = None
        self.reconstruction: np.ndarray | None = None
        self.maps: XrdctMaps | None = None
        self.reconstructed_live = False

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

    def _start_fbp(self, center_px: float) -> None:
        channels = None if self.config.live_channels is None else np.array(self.config.live_channels)
        self.fbp = IncrementalFBP(self.n_translations, self.angles_deg, center_px=center_px, channels=channels,
                                  filter_name=self.config.filter_name)  # fmt: skip

    def _line_done(self, angle_index: int) -> None:
        if self.fbp is None:
            done = self.sinogram.completed_lines
            if done.size < max(3, self.n_angles // 2):
                return
            # half of the lines span ~90°: enough for a preliminary centre (see the module docstring)
            self.preliminary_center_px = self.sinogram.estimate_center_px()
            self._start_fbp(self.preliminary_center_px)
            for line in done:
                self.fbp.add_line(int(line), self.sinogram.air_corrected_line(int(line)))
            return
        self.fbp.add_line(angle_index, self.sinogram.air_corrected_line(angle_index))

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

    def finish(self, radial_deg: np.ndarray, wavelength_angstrom: float) -> None:
        """Final centre, reconstruction (the live one when it used that centre) and maps."""
        corrected = self.corrected_sinogram()
        if self.config.center_px is not None:
            self.center_px = float(self.config.center_px)
        else:
            self.center_px = estimate_center_of_rotation(corrected.sum(axis=2), self.angles_deg)
        live_is_final = (
            self.fbp is not None and self.fbp.complete and self.config.live_channels is None
            and abs(self.fbp.center_px - self.center_px) <= self.config.recenter_tolerance_px
        )  # fmt: skip
        if live_is_final:
            self.reconstruction = self.fbp.image()
        else:
            self.reconstruction = reconstruct(corrected, self.angles_deg, center_px=self.center_px,
                                              filter_name=self.config.filter_name)  # fmt: skip
        self.fbp = None  # its image is the reconstruction now, or was replaced: free it
        self.reconstructed_live = live_is_final
        self.maps = compute_maps(self.reconstruction, radial_deg, self.config.maps,
                                 wavelength_angstrom=wavelength_angstrom)  # fmt: skip

    def mean_lattices(self) -> dict[str, float]:
        """Each lattice map's mean over the voxels where its peak was fitted (Å)."""
        return {name: float(np.nanmean(image)) if np.isfinite(image).any() else math.nan
                for name, image in self.maps.lattices.items()}  # fmt: skip

    def results(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """What is written per scan: dataset path -> (data, attributes)."""
        maps = self.maps
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


class XrdctAnalysis:
    """The XRD-CT analysis of one run (see the module docstring): a single zigzag scan
    (``xrdct_zigzag``) or an operando series of them (``operando_xrdct``, frames tagged with
    their ``scan`` index).

    A series is reduced scan by scan: when a scan's last pattern is placed its reconstruction
    and maps are made and appended to the sidecar file, and the scan is dropped, so memory
    holds the scans in flight only, however long the run. In the file, a series' datasets
    have the scan as their first axis, with the scan's mean time, voltage and capacity.

    Parameters
    ----------
    start : dict
        The run's start document (``shape``, ``extents``, ``geometry``).
    config : XrdctAnalysisConfig
    """

    def __init__(self, start: dict[str, Any], config: XrdctAnalysisConfig) -> None:
        self.start = start
        self.config = config
        self.streams = (config.detector, config.detector + INTEGRATED_SUFFIX)
        self.is_series = start.get("plan_name") in SERIES_PLANS
        self.n_angles, self.n_translations = _scan_shape(start)
        self.angles_deg, self.translations_mm = _scan_axes(start, self.n_angles, self.n_translations)
        integrator = config.integrator(start)
        self.reducer = AzimuthalReducer.from_integrator(integrator, None, config.mask, config.integration)
        self.radial_deg = np.array(self.reducer.radial_deg)
        self.wavelength_angstrom = float(integrator.wavelength) * 1e10
        self.readings = PotentiostatReadings()
        self.in_flight: dict[int, XrdctScan] = {}
        self.scan: XrdctScan | None = None  # the last scan finished (in a series, until the next starts)
        self.summaries: list[dict[str, Any]] = []  # per finished scan: index, centre, mean lattices, time
        self._written: set[int] = set()  # scan indices already in the file
        self.n_frames = self.n_patterns = self.n_rejected = 0
        run_file = run_file_name(start["uid"], start)
        self.path = config.out_dir / analysis_file_name(run_file, "xrdct")
        self.figure_path: Path | None = None
        self.finished = False

    # -- per message ----------------------------------------------------------------------------

    def document(self, name: str, doc: dict[str, Any]) -> None:
        """Keep the potentiostat readings (a series' scans are put against them)."""
        self.readings.document(name, doc)

    def frame(self, frame: Frame) -> None:
        """Integrate (raw frames) and place a pattern in its scan; finish a series' scan once complete."""
        header = frame.header
        try:
            angle, translation = int(header.indices["angle"]), int(header.indices["translation"])
            scan_index = int(header.indices.get("scan", 0))
        except (KeyError, TypeError, ValueError):
            self.n_rejected += 1
            logger.warning("frame %d of %s has no angle/translation indices: skipped", header.seq, header.stream)
            return
        if scan_index in self._written:
            self.n_rejected += 1
            logger.warning("frame %d of %s: scan %d is already written: skipped", header.seq, header.stream,
                           scan_index)  # fmt: skip
            return
        monitor = None
        if self.config.monitor is not None:
            monitor = header.positions.get(self.config.monitor)
            if not (isinstance(monitor, int | float | np.number) and math.isfinite(monitor) and monitor > 0):
                self.n_rejected += 1
                logger.warning("frame %d of %s has no positive %r reading (%r): skipped", header.seq, header.stream,
                               self.config.monitor, monitor)  # fmt: skip
                return
        if header.stream == self.config.detector:
            pattern = self.reducer.integrate(frame.data)
            self.n_frames += 1
        else:
            pattern = frame.data
            self.n_patterns += 1
        scan = self.in_flight.get(scan_index)
        if scan is None:
            if self.is_series:
                self.scan = None  # the last scan is on disk: hold one scan's volumes, not two
            scan = self.in_flight[scan_index] = XrdctScan(scan_index, self.config, self.angles_deg,
                                                          self.translations_mm)  # fmt: skip
        scan.add(angle, translation, pattern, header.timestamp, monitor=None if monitor is None else float(monitor))
        if self.is_series and scan.sinogram.complete:
            self._finish_scan(self.in_flight.pop(scan_index))

    # -- the end -------------------------------------------------------------------------------

    def _finish_scan(self, scan: XrdctScan) -> None:
        if not scan.sinogram.complete:
            logger.warning("run %s scan %d: %d of %d patterns arrived; the missing ones are interpolated from their "
                           "neighbours", self.start["uid"][:8], scan.index, scan.sinogram.n_filled,
                           self.n_angles * self.n_translations)  # fmt: skip
        scan.finish(self.radial_deg, self.wavelength_angstrom)
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "a" if self.summaries else "w") as file:
            group = file.require_group("entry/xrdct")
            if not self.summaries:
                self._write_common(group)
            position = len(self.summaries) if self.is_series else None
            _write_scan(group, scan, position)
        self._written.add(scan.index)
        self.summaries.append({"scan": scan.index, "center_px": scan.center_px, "time_s": scan.mean_time_s,
                               "lattices": scan.mean_lattices(), "interpolated": scan.n_interpolated})  # fmt: skip
        if self.config.figure:
            from .figure import write_summary_figure

            suffix = f".scan{scan.index:03d}.png" if self.is_series else ".png"
            self.figure_path = self.path.with_suffix(suffix)
            write_summary_figure(self, scan, self.figure_path)
        self.scan = scan
        logger.info("run %s scan %d: XRD-CT written to %s (centre %.2f px)", self.start["uid"][:8], scan.index,
                    self.path, scan.center_px)  # fmt: skip

    def finish(self, stop: dict[str, Any] | None) -> None:
        """Finish the scans still open (all of a single scan's work), then the run's attributes
        and, for a series, each scan's time, voltage and capacity."""
        for index in sorted(self.in_flight):
            self._finish_scan(self.in_flight.pop(index))
        if not self.summaries:
            logger.warning("run %s: no XRD-CT pattern arrived; nothing written", self.start["uid"][:8])
            self.finished = True
            return
        with h5py.File(self.path, "a") as file:
            group = file["entry/xrdct"]
            group.attrs.update(
                frames_integrated=self.n_frames,
                patterns_received=self.n_patterns, frames_rejected=self.n_rejected, n_scans=len(self.summaries),
                exit_status="" if stop is None else str(stop.get("exit_status", "")),
            )  # fmt: skip
            if self.is_series:
                self._write_series(group)
        if self.is_series and self.config.figure:
            from .figure import write_series_figure

            self.figure_path = self.path.with_suffix(".series.png")
            write_series_figure(self, self.figure_path)
        self.finished = True

    @property
    def center_px(self) -> float | None:
        """Centre of rotation of the last finished scan (translation-index units)."""
        return self.summaries[-1]["center_px"] if self.summaries else None

    def series(self) -> dict[str, np.ndarray]:
        """Per finished scan, in order: ``scan``, ``time`` (s), ``voltage`` (V), ``capacity``
        (mAh), ``center_of_rotation_px`` and ``mean_<lattice>`` (Å)."""
        times = np.array([s["time_s"] for s in self.summaries], dtype=np.float64)
        columns = {
            "scan": np.array([s["scan"] for s in self.summaries], dtype=np.int64), "time": times,
            "voltage": self.readings.at(times, "voltage"), "capacity": self.readings.at(times, "capacity"),
            "center_of_rotation_px": np.array([s["center_px"] for s in self.summaries], dtype=np.float64),
        }  # fmt: skip
        for name in (peak.name for peak in self.config.maps.lattice_peaks):
            columns[f"mean_{name}"] = np.array([s["lattices"].get(name, np.nan) for s in self.summaries])
        return columns

    def report(self) -> list[str]:
        """The key numbers, a line each, for a terminal."""
        lines = [f"XRD-CT {self.path}" + (f" (figure {self.figure_path.name})" if self.figure_path else "")]
        series = self.series()
        for i, index in enumerate(series["scan"]):
            state = ""
            if np.isfinite(series["voltage"][i]):
                state = f" at {series['voltage'][i]:.3f} V, {series['capacity'][i]:.1f} mAh"
            lattices = ", ".join(f"mean {name[5:]} {series[name][i]:.4f} Å" for name in series
                                 if name.startswith("mean_"))  # fmt: skip
            missing = self.summaries[i]["interpolated"]
            lines.append(f"scan {index}{state}: centre of rotation {series['center_of_rotation_px'][i]:.2f} px"
                         + (f"; {lattices}" if lattices else "")
                         + (f"; {missing} missing patterns interpolated" if missing else ""))  # fmt: skip
        return lines

    def _write_common(self, group: h5py.Group) -> None:
        step_mm = float(abs(self.translations_mm[1] - self.translations_mm[0])) if self.n_translations > 1 else 0.0
        group.attrs.update(self.config.attributes())
        group.attrs.update(
            NX_class="NXprocess", run_uid=self.start["uid"], plan_name=str(self.start.get("plan_name", "")),
            center_source="configured" if self.config.center_px is not None else "estimated",
            wavelength_angstrom=self.wavelength_angstrom, pixel_size_mm=step_mm,
            scan_axis="first axis of every per-scan dataset" if self.is_series else "none (a single scan)",
        )  # fmt: skip
        _dataset(group, "radial", self.radial_deg, units="deg", long_name="2θ")
        _dataset(group, "angles", self.angles_deg, units="deg")
        _dataset(group, "translations", self.translations_mm, units="mm")

    def _write_series(self, group: h5py.Group) -> None:
        units = {"time": "s", "voltage": "V", "capacity": "mAh", "center_of_rotation_px": "px"}
        for name, values in self.series().items():
            if name in group:
                del group[name]
            unit = units.get(name, "angstrom" if name.startswith("mean_") else "")
            _dataset(group, name, values, units=unit)
        potentiostat = group.require_group("potentiostat")
        potentiostat.attrs["NX_class"] = "NXcollection"
        for key, values in self.readings.series().items():
            if key not in potentiostat:
                potentiostat.create_dataset(key, data=values)


# sinograms and reconstructions (float32): gzip took 3.7 s for a tiny scan's 11 MB, in the
# consumer's loop; bitshuffle-LZ4 (as the raw frames) packs them as well in a fraction of it
_VOLUME_COMPRESSION = compression_filter("bitshuffle-lz4")


def _write_scan(group: h5py.Group, scan: XrdctScan, position: int | None) -> None:
    """A scan's results into ``group``: as they are (``position`` None), or as row
    ``position`` of datasets with a leading scan axis (created at the first)."""
    scalars = {"center_of_rotation_px": scan.center_px,
               "preliminary_center_px": np.nan if scan.preliminary_center_px is None else scan.preliminary_center_px,
               "reconstructed_live": scan.reconstructed_live, "patterns_placed": scan.sinogram.n_filled,
               "patterns_replaced": scan.sinogram.n_replaced, "patterns_interpolated": scan.n_interpolated}  # fmt: skip
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
                chunks=(1, *data.shape) if data.nbytes <= 4 << 20 else True,
                **(_VOLUME_COMPRESSION if data.ndim >= 3 else {}),
            )  # fmt: skip
            dataset.attrs.update(attrs)
        dataset = group[name]
        dataset.resize(position + 1, axis=0)
        dataset[position] = data


def _dataset(group: h5py.Group, name: str, data: np.ndarray, **attrs: Any) -> h5py.Dataset:
    dataset = group.create_dataset(name, data=data, **(_VOLUME_COMPRESSION if np.ndim(data) >= 3 else {}))
    dataset.attrs.update(attrs)
    return dataset


def xrdct_analysis_factory(config: XrdctAnalysisConfig):
    """``make_analysis`` for a :class:`~streaming.analysis.consumer.Consumer`: an
    :class:`XrdctAnalysis` for every run of zigzag scans (single or operando) of ``config.detector``."""

    def make_analysis(start: dict[str, Any]) -> XrdctAnalysis | None:
        if start.get("plan_name") not in ZIGZAG_PLANS or config.detector not in start.get("detectors", ()):
            return None
        return XrdctAnalysis(start, config)

    return make_analysis


class IntegrationWorker:
    """``make_analysis`` of a worker: integrate each frame it gets, republish the pattern.

    Parameters
    ----------
    config : XrdctAnalysisConfig
        The builder's config (the integration and geometry must be the same).
    publisher : FramePublisher
        Where patterns go (a PUSH publisher connected to the builder's bound PULL, usually);
        owned by the caller, which closes it.
    stop : event or None
        While the builder takes no pattern, a send waits, looking at this flag (a
        ``threading`` or ``multiprocessing`` event); once set, the pattern in hand is dropped
        and counted (``n_dropped_at_stop``) rather than waited on for ever.
    """

    def __init__(self, config: XrdctAnalysisConfig, publisher: FramePublisher, stop: Any = None) -> None:
        self.config = config
        self.publisher = publisher
        self.stop = stop
        self.n_frames = 0
        self.n_dropped_at_stop = 0

    def __call__(self, start: dict[str, Any]) -> _WorkerRun | None:
        if start.get("plan_name") not in ZIGZAG_PLANS or self.config.detector not in start.get("detectors", ()):
            return None
        return _WorkerRun(self, self.config.reducer(start), start)


class _WorkerRun:
    def __init__(self, worker: IntegrationWorker, reducer: AzimuthalReducer, start: dict[str, Any]) -> None:
        self.start = start
        self.worker = worker
        self.reducer = reducer
        self.streams = (worker.config.detector,)
        self.n_frames = 0

    def document(self, name: str, doc: dict[str, Any]) -> None:
        pass

    def frame(self, frame: Frame) -> None:
        header = frame.header
        pattern = self.reducer.integrate(frame.data).astype(np.float32)
        worker = self.worker
        if not worker.publisher.wait_writable(worker.stop):
            worker.n_dropped_at_stop += 1
            return
        self.worker.publisher.publish(
            header.stream + INTEGRATED_SUFFIX, pattern, run_uid=header.run_uid, positions=header.positions,
            indices=header.indices, timestamp=header.timestamp,
        )  # fmt: skip
        self.n_frames += 1
        self.worker.n_frames += 1

    def finish(self, stop: dict[str, Any] | None) -> None:
        self.reducer = None  # its tables (~50 MB for a Pilatus2M): a worker serves run after run
        logger.info("worker integrated %d frames of this run", self.n_frames)
