"""Potentiostat readings with some lost: values come from the readings that arrived."""

from __future__ import annotations

import numpy as np

from streaming.analysis.readings import PotentiostatReadings


def event(time_s: float, voltage: float | None, capacity: float | None) -> dict:
    data = {"potentiostat_voltage": voltage, "potentiostat_capacity": capacity}
    return {"time": time_s, "data": data, "timestamps": {"potentiostat_voltage": time_s}}


def test_lost_readings_are_passed_over_and_none_give_nan():
    readings = PotentiostatReadings()
    assert np.isnan(readings.at(np.array([1.0]), "voltage")).all()
    for time_s, voltage, capacity in [(0.0, 3.0, 0.0), (10.0, None, 1.0), (20.0, 4.0, None), (40.0, 4.2, 4.0)]:
        readings.document("event", event(time_s, voltage, capacity))
    readings.document("descriptor", {"data_keys": {}})  # not a reading
    assert len(readings) == 4
    np.testing.assert_allclose(readings.at(np.array([5.0, 10.0, 30.0]), "voltage"), [3.25, 3.5, 4.1])
    np.testing.assert_allclose(readings.at(np.array([20.0, 50.0, -1.0]), "capacity"), [2.0, 4.0, 0.0])
