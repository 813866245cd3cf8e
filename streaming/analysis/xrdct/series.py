"""The scans of an XRD-CT run, one summary each, against the potentiostat's readings.

- :class:`ScanSeries`: per finished scan its centre of rotation, mean time, mean lattice
  parameters and interpolated patterns; the series' columns put against the cell's voltage
  and capacity at each scan's mean time, and the report lines for a terminal.

A series keeps these few numbers per scan, not the scans, so its memory does not grow with
the run's length beyond a few values per scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streaming.analysis.readings import PotentiostatReadings

from .scan import XrdctScan

__all__ = ["ScanSeries"]


class ScanSeries:
    """The finished scans of one run, in order.

    Parameters
    ----------
    lattice_names : sequence of str
        The lattice peaks whose maps' means are columns (``mean_<name>``, Å).
    """

    def __init__(self, lattice_names: Sequence[str]) -> None:
        self.lattice_names = tuple(lattice_names)
        self.readings = PotentiostatReadings()
        self.summaries: list[dict[str, Any]] = []  # per finished scan: index, centre, mean lattices, time

    def __len__(self) -> int:
        return len(self.summaries)

    def add(self, scan: XrdctScan) -> None:
        """Summarise a finished scan (after its ``finish``)."""
        self.summaries.append({"scan": scan.index, "center_px": scan.center_px, "time_s": scan.mean_time_s,
                               "lattices": scan.mean_lattices(), "interpolated": scan.n_interpolated,
                               "replaced": scan.sinogram.n_replaced,
                               "partial": scan.fraction_complete if scan.partial else None})  # fmt: skip

    @property
    def center_px(self) -> float | None:
        """Centre of rotation of the last finished scan (translation-index units)."""
        return self.summaries[-1]["center_px"] if self.summaries else None

    def columns(self) -> dict[str, np.ndarray]:
        """Per finished scan, in order: ``scan``, ``time`` (s), ``voltage`` (V), ``capacity``
        (mAh), ``center_of_rotation_px`` and ``mean_<lattice>`` (Å); NaN for a partial scan."""
        times = np.array([s["time_s"] for s in self.summaries], dtype=np.float64)
        columns = {
            "scan": np.array([s["scan"] for s in self.summaries], dtype=np.int64), "time": times,
            "voltage": self.readings.at(times, "voltage"), "capacity": self.readings.at(times, "capacity"),
            "center_of_rotation_px": np.array([np.nan if s["center_px"] is None else s["center_px"]
                                               for s in self.summaries], dtype=np.float64),
        }  # fmt: skip
        for name in self.lattice_names:
            columns[f"mean_{name}"] = np.array([s["lattices"].get(name, np.nan) for s in self.summaries])
        return columns

    def report_lines(self) -> list[str]:
        """A line per scan: the cell's state, centre of rotation, mean lattices, patterns interpolated."""
        lines = []
        series = self.columns()
        for i, index in enumerate(series["scan"]):
            state = ""
            if np.isfinite(series["voltage"][i]):
                state = f" at {series['voltage'][i]:.3f} V, {series['capacity'][i]:.1f} mAh"
            lattices = ", ".join(f"mean {name[5:]} {series[name][i]:.4f} Å" for name in series
                                 if name.startswith("mean_"))  # fmt: skip
            missing, replaced = self.summaries[i]["interpolated"], self.summaries[i]["replaced"]
            if self.summaries[i]["partial"] is not None:
                lines.append(f"scan {index}{state}: partial, {self.summaries[i]['partial']:.0%} of its patterns when "
                             "the run ended; not reconstructed")  # fmt: skip
                continue
            lines.append(f"scan {index}{state}: centre of rotation {series['center_of_rotation_px'][i]:.2f} px"
                         + (f"; {lattices}" if lattices else "")
                         + (f"; {missing} missing patterns interpolated" if missing else "")
                         + (f"; {replaced} patterns taken again (a re-run line) used" if replaced else ""))  # fmt: skip
        return lines
