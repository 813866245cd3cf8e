"""The battery behind the simulated potentiostat: a deterministic equivalent circuit.

- :class:`CellModel`: open-circuit voltage table OCV(SOC), series resistance R0, one RC pair
  (R1, C1), capacities and the cell's safe voltage window. Two cells:
  :data:`AAA_NMC532_GRAPHITE` (the XRD-CT paper's 600 mAh AAA cell, ~325 mAh delivered at
  C/20) and :data:`COIN_NMC811_LI` (the XCS-CT paper's CR2032 with a thick NMC811 cathode
  against Li metal).
- :class:`EquivalentCircuitBattery`: the state (SOC, RC voltage, time) and three modes,
  each advancing a simulated time exactly (the RC pair's exponential, SOC linear in charge):
  :meth:`~EquivalentCircuitBattery.constant_current`,
  :meth:`~EquivalentCircuitBattery.constant_voltage`, :meth:`~EquivalentCircuitBattery.rest`.
  Each returns a :class:`StepResult` whose ``termination`` says why it stopped early:
  a voltage limit, a current cut-off, the cell emptied or filled. Nothing is refused silently.
- :class:`Termination`: those reasons.

- :class:`Battery`: the interface both backends offer (this one and the optional PyBaMM one
  in :mod:`simulators.pybamm_battery`), so the potentiostat does not care which it drives.

Sign convention: current > 0 charges the cell. Units: A, V, Ω, F, s, Ah.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "AAA_NMC532_GRAPHITE",
    "COIN_NMC811_LI",
    "Battery",
    "BatteryState",
    "CellModel",
    "EquivalentCircuitBattery",
    "StepResult",
    "Termination",
]


class Termination(enum.Enum):
    """Why a step ended before its duration."""

    VOLTAGE_LIMIT = "voltage_limit"
    CURRENT_CUTOFF = "current_cutoff"
    EMPTY = "empty"
    FULL = "full"


@dataclass(frozen=True, kw_only=True)
class CellModel:
    """Parameters of an equivalent-circuit cell.

    Attributes
    ----------
    nominal_capacity_ah : float
        Rated capacity; C-rates refer to it.
    capacity_ah : float
        Charge between SOC 0 and 1 of the OCV table (what a slow full cycle delivers).
    ocv_soc, ocv_v : tuple of float
        Open-circuit voltage table, SOC increasing from 0 to 1.
    r0_ohm, r1_ohm, c1_f : float
        Series resistance and the RC pair.
    v_min, v_max : float
        The cell's safe voltage window, V.
    """

    name: str
    nominal_capacity_ah: float
    capacity_ah: float
    ocv_soc: tuple[float, ...]
    ocv_v: tuple[float, ...]
    r0_ohm: float
    r1_ohm: float
    c1_f: float
    v_min: float
    v_max: float

    def __post_init__(self) -> None:
        soc = np.asarray(self.ocv_soc)
        if soc[0] != 0 or soc[-1] != 1 or np.any(np.diff(soc) <= 0) or len(soc) != len(self.ocv_v):
            raise ValueError(f"{self.name}: ocv_soc must rise from 0 to 1 with one voltage per point")
        if np.any(np.diff(self.ocv_v) <= 0):
            raise ValueError(f"{self.name}: ocv_v must rise with SOC")

    def ocv(self, soc: float) -> float:
        return float(np.interp(soc, self.ocv_soc, self.ocv_v))

    def ocv_slope(self, soc: float) -> float:
        """dOCV/dSOC, V per unit SOC (piecewise linear table)."""
        index = int(np.clip(np.searchsorted(self.ocv_soc, soc, side="right") - 1, 0, len(self.ocv_soc) - 2))
        return (self.ocv_v[index + 1] - self.ocv_v[index]) / (self.ocv_soc[index + 1] - self.ocv_soc[index])

    @property
    def tau_s(self) -> float:
        return self.r1_ohm * self.c1_f


#: The XRD-CT paper's AAA cell: NMC532 / graphite, 600 mAh nominal, ~325 mAh at C/20 in
#: 2.75-4.2 V (OCV of a typical NMC/graphite cell over the window actually cycled).
AAA_NMC532_GRAPHITE = CellModel(
    name="AAA NMC532/graphite",
    nominal_capacity_ah=0.600,
    capacity_ah=0.325,
    ocv_soc=(0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
    ocv_v=(2.50, 3.30, 3.45, 3.55, 3.62, 3.67, 3.72, 3.78, 3.86, 3.94, 4.02, 4.09, 4.14, 4.30),
    r0_ohm=0.20,
    r1_ohm=0.25,
    c1_f=400.0,
    v_min=2.5,
    v_max=4.3,
)

#: The XCS-CT paper's CR2032: ~1 mm ice-templated NMC811 against Li metal (cycled at ~0.1 C).
COIN_NMC811_LI = CellModel(
    name="CR2032 NMC811/Li",
    nominal_capacity_ah=0.012,
    capacity_ah=0.010,
    ocv_soc=(0.0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97, 1.0),
    ocv_v=(2.70, 3.40, 3.50, 3.58, 3.66, 3.72, 3.78, 3.85, 3.93, 4.01, 4.08, 4.16, 4.25, 4.40),
    r0_ohm=4.0,
    r1_ohm=8.0,
    c1_f=40.0,
    v_min=2.7,
    v_max=4.4,
)


@dataclass(frozen=True)
class BatteryState:
    time_s: float
    soc: float
    current_a: float
    voltage_v: float
    charge_ah: float  # net charge passed since the start (+ charging)
    rc_voltage_v: float


@dataclass(frozen=True)
class StepResult:
    """What a step did: the time it actually ran, the charge passed and why it stopped."""

    duration_s: float
    charge_ah: float
    termination: Termination | None
    state: BatteryState


def _check_duration(duration_s: float) -> None:
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s}")


class Battery(Protocol):
    """What a potentiostat needs of a simulated cell (both backends provide it)."""

    nominal_capacity_ah: float
    v_min: float
    v_max: float

    @property
    def state(self) -> BatteryState: ...

    def constant_current(self, current_a: float, duration_s: float, *, v_limit: float | None = None) -> StepResult: ...

    def constant_voltage(
        self, voltage_v: float, duration_s: float, *, current_cutoff_a: float | None = None
    ) -> StepResult: ...

    def rest(self, duration_s: float) -> StepResult: ...


class EquivalentCircuitBattery:
    """R0 + R1||C1 + OCV(SOC) cell on a simulated clock.

    Parameters
    ----------
    cell : CellModel
    soc : float
        Initial state of charge, 0-1.
    """

    def __init__(self, cell: CellModel, *, soc: float = 0.0) -> None:
        if not 0.0 <= soc <= 1.0:
            raise ValueError(f"soc must be within [0, 1], got {soc}")
        self.cell = cell
        self._soc = soc
        self._v_rc = 0.0
        self._time_s = 0.0
        self._charge_ah = 0.0
        self._current_a = 0.0

    # -- state ------------------------------------------------------------------------------

    @property
    def nominal_capacity_ah(self) -> float:
        return self.cell.nominal_capacity_ah

    @property
    def v_min(self) -> float:
        return self.cell.v_min

    @property
    def v_max(self) -> float:
        return self.cell.v_max

    def _voltage(self, soc: float, v_rc: float, current_a: float) -> float:
        return self.cell.ocv(soc) + current_a * self.cell.r0_ohm + v_rc

    @property
    def state(self) -> BatteryState:
        return BatteryState(
            time_s=self._time_s,
            soc=self._soc,
            current_a=self._current_a,
            voltage_v=self._voltage(self._soc, self._v_rc, self._current_a),
            charge_ah=self._charge_ah,
            rc_voltage_v=self._v_rc,
        )

    def _advance(self, current_a: float, dt_s: float) -> tuple[float, float]:
        """SOC and RC voltage after ``dt_s`` at constant current (exact update)."""
        decay = math.exp(-dt_s / self.cell.tau_s)
        v_rc = self._v_rc * decay + current_a * self.cell.r1_ohm * (1 - decay)
        soc = self._soc + current_a * dt_s / 3600 / self.cell.capacity_ah
        return soc, v_rc

    def _commit(self, current_a: float, dt_s: float) -> None:
        self._soc, self._v_rc = self._advance(current_a, dt_s)
        self._soc = min(max(self._soc, 0.0), 1.0)
        self._time_s += dt_s
        self._charge_ah += current_a * dt_s / 3600
        self._current_a = current_a

    # -- modes ------------------------------------------------------------------------------

    def constant_current(self, current_a: float, duration_s: float, *, v_limit: float | None = None) -> StepResult:
        """Pass ``current_a`` for ``duration_s``, stopping exactly where the terminal
        voltage reaches ``v_limit`` (default: the cell's window edge in the current's
        direction) or the cell empties or fills."""
        _check_duration(duration_s)
        if not math.isfinite(current_a):
            raise ValueError(f"current_a must be finite, got {current_a}")
        if v_limit is not None and not self.cell.v_min <= v_limit <= self.cell.v_max:
            raise ValueError(
                f"v_limit {v_limit} V is outside the cell's window [{self.cell.v_min}, {self.cell.v_max}] V"
            )
        if current_a == 0:
            return self.rest(duration_s)
        charging = current_a > 0
        limit = (self.cell.v_max if charging else self.cell.v_min) if v_limit is None else v_limit
        soc_bound = 1.0 if charging else 0.0
        time_to_bound = (soc_bound - self._soc) * 3600 * self.cell.capacity_ah / current_a
        horizon = min(duration_s, max(time_to_bound, 0.0))

        def past_limit(t: float) -> bool:
            soc, v_rc = self._advance(current_a, t)
            voltage = self._voltage(soc, v_rc, current_a)
            return voltage >= limit if charging else voltage <= limit

        termination = None
        if past_limit(0.0):
            horizon, termination = 0.0, Termination.VOLTAGE_LIMIT
        elif past_limit(horizon):
            low, high = 0.0, horizon  # the voltage is monotonic in t under constant current
            for _ in range(60):
                middle = 0.5 * (low + high)
                low, high = (low, middle) if past_limit(middle) else (middle, high)
            horizon, termination = high, Termination.VOLTAGE_LIMIT
        elif horizon < duration_s:
            termination = Termination.FULL if charging else Termination.EMPTY
        charge_before = self._charge_ah
        self._commit(current_a, horizon)
        return StepResult(horizon, self._charge_ah - charge_before, termination, self.state)

    def constant_voltage(
        self, voltage_v: float, duration_s: float, *, current_cutoff_a: float | None = None, dt_s: float = 1.0
    ) -> StepResult:
        """Hold the terminal voltage at ``voltage_v`` for ``duration_s`` (steps of ``dt_s``),
        stopping when |current| falls below ``current_cutoff_a``.

        The current of each step is solved semi-implicitly (OCV linearised over the step),
        which holds the voltage without oscillation at any step length.
        """
        if not self.cell.v_min <= voltage_v <= self.cell.v_max:
            raise ValueError(
                f"voltage_v {voltage_v} V is outside the cell's window [{self.cell.v_min}, {self.cell.v_max}] V"
            )
        _check_duration(duration_s)
        if not dt_s > 0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        elapsed, charge_before, termination = 0.0, self._charge_ah, None
        while elapsed < duration_s:
            step = min(dt_s, duration_s - elapsed)
            decay = math.exp(-step / self.cell.tau_s)
            slope = self.cell.ocv_slope(self._soc) * step / 3600 / self.cell.capacity_ah
            current = (voltage_v - self.cell.ocv(self._soc) - self._v_rc * decay) / (
                self.cell.r0_ohm + self.cell.r1_ohm * (1 - decay) + slope
            )
            room_ah = ((1.0 if current > 0 else 0.0) - self._soc) * self.cell.capacity_ah
            if current != 0 and abs(room_ah * 3600 / current) < step:  # the cell fills or empties
                step = abs(room_ah * 3600 / current)
                termination = Termination.FULL if current > 0 else Termination.EMPTY
            self._commit(current, step)
            elapsed += step
            if termination is not None:
                break
            if current_cutoff_a is not None and abs(current) < current_cutoff_a:
                termination = Termination.CURRENT_CUTOFF
                break
        return StepResult(elapsed, self._charge_ah - charge_before, termination, self.state)

    def rest(self, duration_s: float) -> StepResult:
        """Open circuit for ``duration_s``: no current, the RC voltage relaxes."""
        _check_duration(duration_s)
        self._commit(0.0, duration_s)
        return StepResult(duration_s, 0.0, None, self.state)
