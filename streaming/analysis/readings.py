"""Potentiostat readings gathered from a run's event documents, for the analyses to put their
results against the cell's state (voltage, capacity) at the time of the data."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["POTENTIOSTAT_KEYS", "PotentiostatReadings"]

POTENTIOSTAT_KEYS = ("voltage", "current", "capacity", "mode", "step", "step_time")


class PotentiostatReadings:
    """Every potentiostat reading of a run: the monitor stream and those read with
    acquisitions (event data keys ``potentiostat_<key>``), by their time stamp (s)."""

    def __init__(self, device: str = "potentiostat") -> None:
        self.device = device
        self._readings: dict[float, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._readings)

    def document(self, name: str, doc: dict[str, Any]) -> None:
        """Keep the reading of an event that holds one; ignore every other document."""
        data = doc.get("data", {}) if name == "event" else {}
        voltage_key = f"{self.device}_voltage"
        if voltage_key in data:
            time_s = doc.get("timestamps", {}).get(voltage_key, doc.get("time"))
            self._readings[float(time_s)] = {key: data.get(f"{self.device}_{key}") for key in POTENTIOSTAT_KEYS}

    def series(self) -> dict[str, np.ndarray]:
        """The readings as columns sorted by time (``time`` s since the epoch, ``voltage`` V,
        ``current`` A, ``capacity`` mAh, ``mode`` and ``step`` as recorded)."""
        times = sorted(self._readings)
        columns = {"time": np.array(times, dtype=np.float64)}
        for key in POTENTIOSTAT_KEYS:
            values = [self._readings[t][key] for t in times]
            if values and all(isinstance(v, str) for v in values):
                columns[key] = np.array([v.encode() for v in values], dtype="S32")
            else:
                columns[key] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return columns

    def at(self, times_s: np.ndarray, key: str) -> np.ndarray:
        """``key`` (a numeric column) linearly interpolated at ``times_s`` between the readings
        that hold it (a lost or empty reading is passed over; before the first and after the
        last, the nearest); NaN without any."""
        times_s = np.asarray(times_s, dtype=np.float64)
        series = self.series()
        held = np.isfinite(series[key])
        if not held.any():
            return np.full(times_s.shape, np.nan)
        return np.interp(times_s, series["time"][held], series[key][held])
