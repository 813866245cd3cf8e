"""The live XCS-CT analysis of an ``operando_xcsct`` run: EMF maps against charge, XCT masks.

- :class:`XcsctAnalysis`: the :class:`~streaming.analysis.consumer.Analysis` of one run (streams
  ``pco`` and ``hexitec``). HEXITEC frames are batched into a
  :class:`~streaming.processing.hexitec.SpectrumAccumulator` per acquisition (one
  ``(scan, position)``); when the next acquisition begins (or the run ends) its EMF map and
  the EMF of the cathode region (from the latest XCT segmentation on the XCS grid at that
  height; all pixels with counts before the first XCT) are computed, with Poisson sigmas.
  ``pco`` frames go to :mod:`streaming.analysis.xcsct.xct`, reduced and segmented as soon as a
  scan's projections are in. Potentiostat readings are collected from the documents and
  interpolated at each acquisition's mean frame time when the run ends (documents and
  frames travel on separate sockets, so only then are all readings surely in: this keeps
  a replay identical to the live run).
- :func:`xcsct_analysis_factory`: ``make_analysis`` for a :class:`~streaming.analysis.consumer.Consumer`.

Its settings are :class:`~.config.XcsctAnalysisConfig`.

Results go to the sidecar files of the run file (``<stem>.xcs.h5`` and ``<stem>.xct.h5``
in ``out_dir``, linked from the run file as ``/entry/xcs`` and ``/entry/xct``), and a PNG
summary ``<stem>.xcs.png`` (:mod:`streaming.analysis.xcsct.figure`).

Spectra kept: per acquisition the spectrum summed over the region and over the detector
(n_acq, n_bins), plus the full 80 × 80 × n_bins cube of the latest acquisition only. The arrays
of every acquisition (maps, masks, spectra) wait on disk until the run ends, the latest alone in
memory (:mod:`.spill`), so memory does not grow with the number of acquisitions. A cube is
25.6 MB of uint32; all of them would grow memory and file with the run's length, while
every cube can be rebuilt exactly by replaying the run file with another configuration.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from streaming.analysis.delivery import RunDelivery
from streaming.analysis.readings import PotentiostatReadings
from streaming.processing import compton
from streaming.processing.hexitec import SpectrumAccumulator
from streaming.processing.xcs_reference import correct_spectra
from streaming.store.chunks import RESULTS_COMPRESSION
from streaming.store.filenames import analysis_file_name, run_file_name
from streaming.wire.products import Product
from streaming.wire.protocol import Frame

from .config import XcsctAnalysisConfig
from .products import xcsct_products
from .spill import SpilledArrays, SpillFile
from .xct import DARK, XctResult, XctScanReducer, reduce_scan, write_xct

__all__ = ["XcsctAnalysis", "xcsct_analysis_factory"]

logger = logging.getLogger(__name__)

SPILLED = ("emf_map", "emf_sigma", "region_mask", "spectrum_region", "spectrum_total")  # per acquisition, on disk


@dataclass
class _Acquisition:
    """One XCS acquisition's bookkeeping (its spectra are in the accumulator)."""

    scan: int
    position: int
    height_mm: float
    time_sum_s: float = 0.0
    n_frames: int = 0
    attempt: int = 0  # taken again after a pause or a suspension: the later one counts


def xcsct_analysis_factory(config: XcsctAnalysisConfig):
    """``make_analysis`` for a consumer: an :class:`XcsctAnalysis` for ``operando_xcsct`` runs."""

    def make(start: dict[str, Any]) -> XcsctAnalysis | None:
        return XcsctAnalysis(start, config) if start.get("plan_name") == "operando_xcsct" else None

    return make


class XcsctAnalysis:
    """The analysis of one ``operando_xcsct`` run (see the module docstring).

    Parameters
    ----------
    start : dict
        The run's start document.
    config : XcsctAnalysisConfig
    """

    streams = ("pco", "hexitec")
    takes_batches = True  # the HEXITEC's frames come a thousand to a message

    def __init__(self, start: dict[str, Any], config: XcsctAnalysisConfig) -> None:
        self.start, self.config = start, config
        self.stem = Path(run_file_name(start["uid"], start)).stem
        self._edges_kev = config.hexitec.energy_edges_kev
        self._accumulator: SpectrumAccumulator | None = None  # built at the first beam-on frame
        self._darks: list[np.ndarray] = []
        self.pedestal_source = "config"
        self._batch = np.empty((config.batch_frames, 80, 80), np.uint16)
        self._n_batch = 0
        self._acquisition: _Acquisition | None = None
        self._reducer: XctScanReducer | None = None
        self.xct: list[XctResult] = []  # every scan, the latest alone with its volume and masks (memory)
        self._spill = SpillFile(config.out_dir)  # every acquisition's arrays but the latest: on disk (.spill)
        weakref.finalize(self, self._spill.close)  # an analysis that never finishes, too
        self.results: dict[str, list[Any] | SpilledArrays] = {key: [] for key in (
            "scan", "position", "position_mm", "emf_time", "n_frames", "n_frames_expected", "emf_cathode",
            "emf_cathode_sigma", "region_from_xct")}  # fmt: skip
        self.results.update({key: SpilledArrays(self._spill, key) for key in SPILLED})
        self.counters: list[dict[str, int]] = []
        self.latest_cube: np.ndarray | None = None
        self.readings = PotentiostatReadings()
        self.voltage_v = self.capacity_mah = np.empty(0)
        self.files: dict[str, Path] = {}
        self.delivery: RunDelivery | None = None  # how the frames came (live, the recorder's file), from the consumer
        self.xct_partial = 0  # XCT scans the run's end interrupted: not reduced
        self._background: tuple[np.ndarray, int] | None = None
        if config.background_path is not None:
            with np.load(config.background_path) as reference:
                self._background = (np.asarray(reference["spectra"], np.float64), int(reference["n_frames"]))

    # -- documents ---------------------------------------------------------------------------

    def document(self, name: str, doc: dict[str, Any]) -> None:
        """Keep every potentiostat reading (the monitor stream and those read with acquisitions)."""
        self.readings.document(name, doc)

    # -- frames ------------------------------------------------------------------------------

    def frame(self, frame: Frame) -> None:
        if frame.header.stream == "hexitec":
            self._hexitec(frame)
        else:
            for one in frame.frames():
                self._pco(one)

    def _pco(self, frame: Frame) -> None:
        scan = frame.header.indices.get("scan", 0)
        if self._reducer is not None and self._reducer.scan != scan:
            self._reduce_xct()
        if self._reducer is None:
            self._reducer = XctScanReducer(scan)
        self._reducer.add(frame)
        if self._reducer.n_projections == self.start.get("plan_args", {}).get("n_projections"):
            self._reduce_xct()

    def _reduce_xct(self) -> None:
        reducer, self._reducer = self._reducer, None
        if reducer is None or reducer.n_projections < 2:
            return
        c, args = self.config, self.start.get("plan_args", {})
        planned = None  # the scan's grid of angles, to put the projections that never came on
        if "n_projections" in args:
            planned = (int(args["n_projections"]), tuple(args.get("angle_range", (0.0, 360.0))))
        result = reduce_scan(reducer, ring_removal=c.ring_removal, filter_name=c.filter_name, center_px=c.center_px,
                             pixel_size_m=c.xct_pixel_size_m, row_height_m=c.xct_row_height_m,
                             z_origin_m=c.xct_z_origin_m, n_pixels=c.xct_n_pixels, segmentation=c.segmentation,
                             planned=planned)  # fmt: skip
        if self.xct:  # memory must not grow with the run: only the latest scan keeps its volume
            self.xct[-1] = self.xct[-1].summary()
        self.xct.append(result)
        logger.info("XCT scan %d reduced from %d projections (%d interpolated)", reducer.scan, reducer.n_projections,
                    self.xct[-1].n_interpolated)  # fmt: skip

    def _hexitec(self, frame: Frame) -> None:
        """A HEXITEC frame or batch (a batch is within one acquisition: its indices are all its frames')."""
        indices = frame.header.indices
        frames = frame.data if frame.header.n_frames > 1 else frame.data[None]
        if indices.get("image_type") == DARK:
            self._darks.append(np.array(frames))  # a copy: the view's buffer is the socket's
            return
        self._reduce_xct()  # a scan whose last projections were lost must not hold up its mask
        key, attempt = (indices.get("scan", 0), indices.get("position", 0)), indices.get("attempt", 0)
        current = self._acquisition
        if current is not None and (current.scan, current.position) == key and attempt != current.attempt:
            if attempt < current.attempt:
                return  # superseded by the acquisition taken again
            self._restart(attempt)  # taken again after a pause: its earlier frames are dropped
        elif current is None or (current.scan, current.position) != key:
            self._complete()
            self._acquisition = _Acquisition(*key, frame.header.positions.get("vertical", math.nan), attempt=attempt)
        current = self._acquisition
        if self._accumulator is None:
            darks = np.concatenate(self._darks) if self._darks else None
            self.pedestal_source = "run dark frames" if darks is not None else "config"
            self._accumulator = SpectrumAccumulator(self.config.calibration(darks), self.config.hexitec)
            self._darks.clear()
        current.time_sum_s += sum(frame.header.timestamps) if frame.header.n_frames > 1 else frame.header.timestamp
        current.n_frames += len(frames)
        done = 0
        while done < len(frames):  # into the event chain's batch, which is handed over when full
            n = min(len(self._batch) - self._n_batch, len(frames) - done)
            self._batch[self._n_batch : self._n_batch + n] = frames[done : done + n]
            self._n_batch, done = self._n_batch + n, done + n
            if self._n_batch == len(self._batch):
                self._flush()

    def _restart(self, attempt: int) -> None:
        """The current acquisition is being taken again: what it had so far is dropped."""
        done = self._acquisition
        logger.info("XCS scan %d position %d taken again (attempt %d): %d earlier frames dropped", done.scan,
                    done.position, attempt, done.n_frames)  # fmt: skip
        self._acquisition = _Acquisition(done.scan, done.position, done.height_mm, attempt=attempt)
        self._n_batch = 0
        if self._accumulator is not None:
            self._accumulator.reset()

    def _flush(self) -> None:
        if self._n_batch:
            self._accumulator.add(self._batch[: self._n_batch])
            self._n_batch = 0

    def _complete(self) -> None:
        """The current acquisition is over: its EMF map and region EMF."""
        done, self._acquisition = self._acquisition, None
        if done is None or done.n_frames == 0:
            return
        self._flush()
        cube = self._accumulator.spectra
        c = self.config
        if self._background is not None:  # the holder's signal, scaled to these frames, goes first
            spectra, frames = self._background
            cube = correct_spectra(cube, n_frames=done.n_frames, background=spectra, background_frames=frames)
        emf_map, emf_sigma = compton.emf(cube, self._edges_kev, c.incident_kev, c.angle_deg, return_sigma=True)
        if self.xct:
            fraction = self.xct[-1].mask_on_xcs_grid(c.region_component, z_centre_m=done.height_mm * 1e-3,
                                                     thickness_m=c.sheet_thickness_m)  # fmt: skip
            region = fraction >= c.region_fraction
        else:
            region = cube.sum(axis=-1) > 0
        spectrum = cube[region].sum(axis=0, dtype=cube.dtype if self._background is not None else np.int64)
        value, sigma = compton.emf(spectrum, self._edges_kev, c.incident_kev, c.angle_deg, return_sigma=True)
        for key, item in (("scan", done.scan), ("position", done.position), ("position_mm", done.height_mm),
                          ("emf_time", done.time_sum_s / done.n_frames), ("n_frames", done.n_frames),
                          ("n_frames_expected", int(self.start.get("xcs_frames_per_acquisition", done.n_frames))),
                          ("emf_map", emf_map), ("emf_sigma", emf_sigma), ("emf_cathode", float(value)),
                          ("emf_cathode_sigma", float(sigma)), ("region_mask", region),
                          ("region_from_xct", bool(self.xct)), ("spectrum_region", spectrum),
                          ("spectrum_total", cube.sum(axis=(0, 1)))):  # fmt: skip
            self.results[key].append(item)
        self.counters.append(self._accumulator.counters.as_dict())
        self.latest_cube = cube
        self._accumulator.reset()
        logger.info("XCS scan %d position %d: EMF %.4f ± %.4f from %d frames", done.scan, done.position, value,
                    sigma, done.n_frames)  # fmt: skip

    # -- the end -----------------------------------------------------------------------------

    def finish(self, stop: dict[str, Any] | None) -> None:
        """Complete what is open, interpolate the potentiostat, write the sidecars and the PNG.

        A run that did not end in success leaves an XCT scan it interrupted unreduced (counted
        in ``xct_partial``: no volume made of a fraction of a scan); an interrupted XCS
        acquisition keeps the frames it has, and says how many of how many."""
        ended_early = stop is None or stop.get("exit_status") != "success"
        reducer, planned = self._reducer, self.start.get("plan_args", {}).get("n_projections")
        if ended_early and reducer is not None and planned is not None and reducer.n_projections < planned:
            logger.warning("XCT scan %d ended with %d of %d projections: partial, not reduced", reducer.scan,
                           reducer.n_projections, planned)  # fmt: skip
            self.xct_partial, self._reducer = self.xct_partial + 1, None
        self._reduce_xct()
        self._complete()
        series = self.readings.series()
        times = np.asarray(self.results["emf_time"], dtype=np.float64)
        self.voltage_v = self.readings.at(times, "voltage")
        self.capacity_mah = self.readings.at(times, "capacity")
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        run_file = run_file_name(self.start["uid"], self.start)
        self.files["xcs"] = self.config.out_dir / analysis_file_name(run_file, "xcs")
        self.files["xct"] = self.config.out_dir / analysis_file_name(run_file, "xct")
        with h5py.File(self.files["xcs"], "w") as file:
            self._write_xcs(_entry(file), series, stop)
        for key in SPILLED:  # read from the sidecar from now on: the temporary file goes
            self.results[key].moved_to(self.files["xcs"], f"entry/xcs/{key}")
        self._spill.close()
        with h5py.File(self.files["xct"], "w") as file:
            write_xct(_entry(file), self.xct, self._xct_attrs())
        if self.config.figure:
            from .figure import write_summary  # matplotlib only when a figure is asked for

            self.files["png"] = self.config.out_dir / f"{self.stem}.xcs.png"
            write_summary(self.files["png"], config=self.config, results=self.results, xct=self.xct,
                          capacity_mah=self.capacity_mah)  # fmt: skip

    def current_spectrum(self) -> tuple[np.ndarray | None, int]:
        """The spectrum summed over the detector of the acquisition under way (its frames so
        far), else of the last one; (None, 0) before the first."""
        current = self._acquisition
        if current is not None and current.n_frames and self._accumulator is not None:
            return self._accumulator.spectra.sum(axis=(0, 1)), self._accumulator.n_frames
        if self.results["spectrum_total"]:
            return np.asarray(self.results["spectrum_total"][-1]), int(self.results["n_frames"][-1])
        return None, 0

    def products(self, requested: Callable[[str], set[str]]) -> list[Product]:
        """What this analysis holds now, for the products channel (:mod:`.products`)."""
        return xcsct_products(self, requested)

    def progress(self) -> str:
        """Where the run stands, for a progress bar (read from the consumer's thread)."""
        return f"XCT scans {len(self.xct)}, XCS acquisitions {len(self.results['scan'])}"

    def report(self) -> list[str]:
        """The key numbers, a line each, for a terminal: the files, then per XCS scan the
        cathode EMF (mean over its heights, Poisson sigma) against voltage and capacity."""
        lines = [f"{kind.upper()} {path}" for kind, path in self.files.items()]
        if self.delivery is not None:
            lines.append(self.delivery.report_line())
        used, expected = (np.asarray(self.results[key], np.int64) for key in ("n_frames", "n_frames_expected"))
        if np.any(used < expected):  # the EMF and its sigma come from the frames that arrived
            lines.append(f"XCS frames used of expected: {int(used.sum())} of {int(expected.sum())} "
                         f"(per acquisition, at least {float(np.min(used / expected)):.1%})")  # fmt: skip
        interpolated = [r.n_interpolated for r in self.xct]
        lines.append(f"XCT scans reduced: {len(self.xct)}; XCS acquisitions: {len(self.results['scan'])}"
                     + (f"; XCT projections interpolated per scan: {interpolated}" if any(interpolated) else "")
                     + (f"; {self.xct_partial} XCT scan partial when the run ended, not reduced"
                        if self.xct_partial else ""))  # fmt: skip
        scans = np.asarray(self.results["scan"], dtype=np.int64)
        emf = np.asarray(self.results["emf_cathode"], dtype=np.float64)
        sigma = np.asarray(self.results["emf_cathode_sigma"], dtype=np.float64)
        for scan in np.unique(scans):
            at = scans == scan
            weights = 1.0 / sigma[at] ** 2  # inverse-variance mean over the scan's heights
            mean, mean_sigma = np.sum(weights * emf[at]) / weights.sum(), weights.sum() ** -0.5
            state = (f" at {np.mean(self.voltage_v[at]):.3f} V, {np.mean(self.capacity_mah[at]):.1f} mAh"
                     if np.isfinite(self.voltage_v[at]).all() else "")  # fmt: skip
            region = self.config.region_component if self.results["region_from_xct"][int(np.argmax(at))] else "all"
            lines.append(f"scan {scan}{state}: EMF ({region}) {mean:.4f} ± {mean_sigma:.4f} "
                         f"over {int(at.sum())} heights")  # fmt: skip
        return lines

    def _xct_attrs(self) -> dict[str, object]:
        c = self.config
        return {"ring_removal": c.ring_removal, "filter": c.filter_name, "center_px": c.center_px,
                "pixel_size_m": c.xct_pixel_size_m, "row_height_m": c.xct_row_height_m,
                "z_origin_m": c.xct_z_origin_m, "segmentation": repr(c.segmentation),
                "run_uid": self.start["uid"]}  # fmt: skip

    def _write_xcs(self, entry: h5py.Group, series: dict[str, np.ndarray], stop: dict[str, Any] | None) -> None:
        c, h = self.config, self.config.hexitec
        group = entry.create_group("xcs")
        group.attrs.update(
            NX_class="NXprocess", run_uid=self.start["uid"], incident_keV=c.incident_kev, angle_deg=c.angle_deg,
            threshold_kev=h.threshold_kev if h.threshold_kev is not None else np.nan,
            threshold_adu=h.threshold_adu if h.threshold_adu is not None else np.nan,
            charge_sharing=h.charge_sharing, max_event_pixels=h.max_event_pixels, pz_low_window_au=1.0,
            pz_high_window_au=(1.0, 5.0), emf="E_L / E_H, E_L = int_{|pz|<1} J, E_H = int_{1<|pz|<5} J",
            gradients_path=str(c.gradients_path), intercepts_path=str(c.intercepts_path),
            pedestal_source=self.pedestal_source, region_component=c.region_component,
            region_fraction=c.region_fraction, sheet_thickness_m=c.sheet_thickness_m, batch_frames=c.batch_frames,
            background_path=str(c.background_path or ""), exit_status=(stop or {}).get("exit_status", "unknown"),
            xct_scans_partial=self.xct_partial, **(self.delivery.attributes() if self.delivery is not None else {}),
        )  # fmt: skip
        group.create_dataset("energy", data=self._edges_kev).attrs["units"] = "keV"
        units = {"position_mm": "mm", "emf_time": "s"}
        for key, values in self.results.items():
            if isinstance(values, SpilledArrays):
                values.write_to(group, key, compression="gzip")
                continue
            data = np.asarray(values) if values else np.empty((0,))
            dataset = group.create_dataset(key, data=data)
            if key in units:
                dataset.attrs["units"] = units[key]
        group.create_dataset("voltage", data=self.voltage_v).attrs["units"] = "V"
        group.create_dataset("capacity_mah", data=self.capacity_mah).attrs["units"] = "mAh"
        counters = group.create_group("event_counters")
        for name in ("frames", "hit_pixels", "single", "merged", "dropped", "out_of_range"):
            counters.create_dataset(name, data=np.array([k[name] for k in self.counters], np.int64))
        if self.latest_cube is not None:
            # mostly empty bins: gzip with the shuffle packs the 25.6 MB cube to a fraction of it
            spectra = group.create_dataset("spectra", data=self.latest_cube, chunks=(8, 80, self.latest_cube.shape[-1]),
                                           **RESULTS_COMPRESSION)  # fmt: skip
            spectra.attrs.update(acquisition=len(self.counters) - 1, units="counts")
        potentiostat = group.create_group("potentiostat")
        potentiostat.attrs["NX_class"] = "NXcollection"
        for key, values in series.items():
            potentiostat.create_dataset(key, data=values)


def _entry(file: h5py.File) -> h5py.Group:
    entry = file.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    return entry
