"""Live XRD-CT analysis: frames → patterns → sinogram → reconstruction → maps → ``/entry/xrdct``.

- :class:`XrdctAnalysis`: the :class:`~streaming.analysis.consumer.Analysis` of one zigzag run. It
  accepts raw detector frames (stream ``pilatus``, integrated here) or patterns integrated
  by workers (stream ``pilatus.integrated``, :mod:`.workers`), places them in their scan
  (:mod:`.scan`) by their angle/translation indices, back-projects each completed line, and
  writes each finished scan into the sidecar file that the run file links as
  ``/entry/xrdct`` (:mod:`.writer`), with a PNG summary (:mod:`.figure`).
- :func:`xrdct_analysis_factory`: ``make_analysis`` for the builder (accepts xrdct_zigzag runs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from streaming.analysis.delivery import RunDelivery
from streaming.analysis.readings import PotentiostatReadings
from streaming.processing.integration import AzimuthalReducer
from streaming.store.filenames import analysis_file_name, run_file_name
from streaming.wire.products import Product
from streaming.wire.protocol import Frame

from .config import INTEGRATED_SUFFIX, SERIES_PLANS, ZIGZAG_PLANS, XrdctAnalysisConfig
from .products import FinishedMaps, xrdct_products
from .scan import LOCAL_REDUCTION, ScanReduction, XrdctScan, scan_axes, scan_shape
from .series import ScanSeries
from .writer import write_run, write_scan, write_series

__all__ = ["XrdctAnalysis", "xrdct_analysis_factory"]

logger = logging.getLogger(__name__)


class XrdctAnalysis:
    """The XRD-CT analysis of one run (see the module docstring): a single zigzag scan
    (``xrdct_zigzag``) or an operando series of them (``operando_xrdct``, frames tagged with
    their ``scan`` index).

    A series is reduced scan by scan: when a scan's last pattern is placed its reconstruction
    and maps are made and appended to the sidecar file (by a thread of its own, while the
    next scan's frames come in; :meth:`finish` waits for it), and the scan is dropped, so
    memory holds the scans in flight and the one being written only, however long the run.
    In the file, a series' datasets have the scan as their first axis, with the scan's mean
    time, voltage and capacity.

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
        self.n_angles, self.n_translations = scan_shape(start)
        self.angles_deg, self.translations_mm = scan_axes(start, self.n_angles, self.n_translations)
        integrator = config.integrator(start)
        self.reducer = AzimuthalReducer.from_integrator(integrator, None, config.mask, config.integration)
        self.radial_deg = np.array(self.reducer.radial_deg)
        self.wavelength_angstrom = float(integrator.wavelength) * 1e10
        self.in_flight: dict[int, XrdctScan] = {}
        self.scan: XrdctScan | None = None  # the last scan finished (in a series, until the next starts)
        self.finished_scans = ScanSeries(peak.name for peak in config.maps.lattice_peaks)
        self._written: set[int] = set()  # scan indices already in the file
        self.n_frames = self.n_patterns = self.n_rejected = 0
        run_file = run_file_name(start["uid"], start)
        self.path = config.out_dir / analysis_file_name(run_file, "xrdct")
        self.figure_path: Path | None = None
        self.delivery: RunDelivery | None = None  # how the frames came (live, the recorder's file), from the consumer
        self.finished = False
        self.reduction: ScanReduction = LOCAL_REDUCTION
        self.back_project_live = True
        self._latest_pattern: np.ndarray | None = None  # for the products channel
        self._scan_pattern_sum = np.zeros(self.radial_deg.size, dtype=np.float64)
        self.n_scan_patterns = 0
        self.last_maps: FinishedMaps | None = None
        self._writer: ThreadPoolExecutor | None = None  # the scans' writes, off the analysis' path
        self._writing: Future | None = None
        self.write_failures = 0

    def reduce_on(self, reduction: ScanReduction) -> None:
        """Make each finished scan's reconstruction and maps with ``reduction`` (workers)
        instead of here, and back-project nothing while lines arrive: the live image is made
        at the end by ``reduction``, the same sums (:mod:`.scan`). Before the first frame."""
        if self.in_flight or self.finished_scans:
            raise RuntimeError("reduce_on: the run's frames have begun")
        self.reduction, self.back_project_live = reduction, False

    # -- per message ----------------------------------------------------------------------------

    def document(self, name: str, doc: dict[str, Any]) -> None:
        """Keep the potentiostat readings (a series' scans are put against them)."""
        self.finished_scans.readings.document(name, doc)

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
        self._latest_pattern = pattern
        scan = self.in_flight.get(scan_index)
        if scan is None:
            self._scan_pattern_sum[:], self.n_scan_patterns = 0.0, 0
            if self.is_series:
                self.scan = None  # the last scan is on disk: hold one scan's volumes, not two
            scan = self.in_flight[scan_index] = XrdctScan(scan_index, self.config, self.angles_deg,
                                                          self.translations_mm,
                                                          back_project_live=self.back_project_live)  # fmt: skip
        scan.add(angle, translation, pattern, header.timestamp, monitor=None if monitor is None else float(monitor))
        self._scan_pattern_sum += pattern
        self.n_scan_patterns += 1
        if self.is_series and scan.sinogram.complete:
            self._finish_scan(self.in_flight.pop(scan_index))

    # -- the end -------------------------------------------------------------------------------

    def _finish_scan(self, scan: XrdctScan, *, partial: bool = False) -> None:
        if partial:
            logger.warning("run %s scan %d ended with %.0f %% of its patterns: written as partial, not reconstructed",
                           self.start["uid"][:8], scan.index, 100 * scan.fraction_complete)  # fmt: skip
            scan.finish_partial()
        elif not scan.sinogram.complete:
            logger.warning("run %s scan %d: %d of %d patterns arrived; the missing ones are interpolated from their "
                           "neighbours", self.start["uid"][:8], scan.index, scan.sinogram.n_filled,
                           self.n_angles * self.n_translations)  # fmt: skip
        if not partial:
            scan.finish(self.radial_deg, self.wavelength_angstrom, self.reduction)
        self._wait_for_writes()  # the scans go to the file one after the other, in order
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="xrdct-writer")
        self._writing = self._writer.submit(self._write_scan, scan, len(self.finished_scans))
        self._written.add(scan.index)
        self.finished_scans.add(scan)
        if not partial:  # its maps stay on offer (products) after its volumes are dropped
            self.last_maps = FinishedMaps(scan.index, scan.center_px, scan.maps, scan.mean_lattices())
        if self.config.figure and not partial:
            from .figure import write_summary_figure  # matplotlib only when a figure is asked for

            suffix = f".scan{scan.index:03d}.png" if self.is_series else ".png"
            self.figure_path = self.path.with_suffix(suffix)
            write_summary_figure(
                self.figure_path, sinogram=scan.sinogram.sinogram(), reconstruction=scan.reconstruction,
                maps=scan.maps, radial_deg=self.radial_deg, angles_deg=self.angles_deg,
                translations_mm=self.translations_mm, center_px=scan.center_px,
                channel_deg=self.config.figure_channel_deg, title=f"scan {scan.index}" if self.is_series else None,
            )  # fmt: skip
        self.scan = scan

    def _write_scan(self, scan: XrdctScan, n_finished: int) -> None:
        """Scan ``n_finished`` of the run into the file (in the writer's thread: gzip of the
        volumes takes seconds, during which h5py lets the analysis go on)."""
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "a" if n_finished else "w") as file:
            group = file.require_group("entry/xrdct")
            if not n_finished:
                write_run(group, self.config, self.start, is_series=self.is_series,
                          wavelength_angstrom=self.wavelength_angstrom, radial_deg=self.radial_deg,
                          angles_deg=self.angles_deg, translations_mm=self.translations_mm)  # fmt: skip
            write_scan(group, scan, n_finished if self.is_series else None)
        logger.info("run %s scan %d: XRD-CT written to %s (centre %.2f px)", self.start["uid"][:8], scan.index,
                    self.path, scan.center_px)  # fmt: skip

    def _wait_for_writes(self) -> None:
        """Until the scan being written is in the file. A write that failed (a full disk) is
        logged and counted (``write_failures``); the next scans are still written."""
        writing, self._writing = self._writing, None
        if writing is not None and writing.exception() is not None:
            self.write_failures += 1
            logger.error("run %s: writing a scan to %s failed: %s", self.start["uid"][:8], self.path,
                         writing.exception())  # fmt: skip

    def finish(self, stop: dict[str, Any] | None) -> None:
        """Finish the scans still open (all of a single scan's work), then the run's attributes
        and, for a series, each scan's time, voltage and capacity. A run that did not end in
        success (aborted, failed, or never stopped) leaves its unfinished scan partial: no
        interpolation passed off as data."""
        ended_early = stop is None or stop.get("exit_status") != "success"
        try:
            for index in sorted(self.in_flight):
                scan = self.in_flight.pop(index)
                self._finish_scan(scan, partial=ended_early and not scan.sinogram.complete)
            self._wait_for_writes()
        finally:
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None
        if not self.finished_scans:
            logger.warning("run %s: no XRD-CT pattern arrived; nothing written", self.start["uid"][:8])
            self.finished = True
            return
        with h5py.File(self.path, "a") as file:
            group = file["entry/xrdct"]
            group.attrs.update(
                frames_integrated=self.n_frames,
                patterns_received=self.n_patterns, frames_rejected=self.n_rejected, n_scans=len(self.finished_scans),
                exit_status="" if stop is None else str(stop.get("exit_status", "")),
                **(self.delivery.attributes() if self.delivery is not None else {}),
            )  # fmt: skip
            if self.is_series:
                write_series(group, self.series(), self.finished_scans.readings.series())
        if self.is_series and self.config.figure:
            from .figure import write_series_figure

            self.figure_path = self.path.with_suffix(".series.png")
            write_series_figure(self.figure_path, self.series())
        self.finished = True

    @property
    def center_px(self) -> float | None:
        """Centre of rotation of the last finished scan (translation-index units)."""
        return self.finished_scans.center_px

    def series(self) -> dict[str, np.ndarray]:
        """Per finished scan, in order: ``scan``, ``time`` (s), ``voltage`` (V), ``capacity``
        (mAh), ``center_of_rotation_px`` and ``mean_<lattice>`` (Å)."""
        return self.finished_scans.columns()

    def progress(self) -> str:
        """Where the run stands, for a progress bar: each scan in flight's complete lines and
        preliminary centre, and a series' scans done (read from the consumer's thread)."""
        words = []
        for index, scan in list(self.in_flight.items()):
            centre = scan.preliminary_center_px or scan.config.center_px
            words.append(f"scan {index}: {scan.sinogram.completed_lines.size}/{self.n_angles} lines"
                         + ("" if centre is None else f", centre {centre:.1f} px"))  # fmt: skip
        if self.is_series:
            words.append(f"{len(self.finished_scans)} scans done")
        return "; ".join(words)

    @property
    def readings(self) -> PotentiostatReadings:
        """The potentiostat's readings of the run so far."""
        return self.finished_scans.readings

    def pattern_arrays(self) -> dict[str, np.ndarray]:
        """The latest pattern and the mean of the scan's patterns so far, as integrated (before
        any monitor division; a pattern taken again counts twice), for the products channel."""
        if self._latest_pattern is None:
            return {}
        mean = self._scan_pattern_sum / max(1, self.n_scan_patterns)
        return {"latest": np.asarray(self._latest_pattern, np.float32), "mean": mean.astype(np.float32)}

    def default_channel(self) -> int:
        """The radial channel shown unless asked for another: the figure's 2θ, or the
        strongest channel of the mean pattern so far."""
        if self.config.figure_channel_deg is not None:
            return int(np.argmin(np.abs(self.radial_deg - self.config.figure_channel_deg)))
        return int(np.argmax(self._scan_pattern_sum)) if self.n_scan_patterns else self.radial_deg.size // 2

    def products(self, requested: Callable[[str], set[str]]) -> list[Product]:
        """What this analysis holds now, for the products channel (:mod:`.products`)."""
        return xrdct_products(self, requested)

    def report(self) -> list[str]:
        """The key numbers, a line each, for a terminal."""
        figure = f" (figure {self.figure_path.name})" if self.figure_path else ""
        delivery = [self.delivery.report_line()] if self.delivery is not None else []
        failed = [f"{self.write_failures} scan(s) failed to be written (see the log)"] if self.write_failures else []
        return [f"XRD-CT {self.path}{figure}", *delivery, *failed, *self.finished_scans.report_lines()]


def xrdct_analysis_factory(config: XrdctAnalysisConfig):
    """``make_analysis`` for a :class:`~streaming.analysis.consumer.Consumer`: an
    :class:`XrdctAnalysis` for every run of zigzag scans (single or operando) of ``config.detector``."""

    def make_analysis(start: dict[str, Any]) -> XrdctAnalysis | None:
        if start.get("plan_name") not in ZIGZAG_PLANS or config.detector not in start.get("detectors", ()):
            return None
        return XrdctAnalysis(start, config)

    return make_analysis
