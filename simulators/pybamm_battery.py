"""PyBaMM (SPM / SPMe) behind the :class:`~simulators.battery.Battery` interface: optional.

PyBaMM is imported when this module is; :class:`PybammBattery` runs each call as a one-step
PyBaMM experiment that starts from the previous solution, so the physics-based state carries
over from step to step exactly as in one long experiment. Termination events map onto
:class:`~simulators.battery.Termination`. Sign convention as in :mod:`simulators.battery`
(current > 0 charges; PyBaMM's is the opposite).
"""

from __future__ import annotations

import os

# PyBaMM's opt-out telemetry starts a background sender thread on import; a beamline tool
# must not phone home (and the beamline network would block it anyway).
os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

import pybamm

from .battery import BatteryState, StepResult, Termination

__all__ = ["PybammBattery"]


class PybammBattery:
    """A PyBaMM cell model stepped by constant current, constant voltage and rest.

    Parameters
    ----------
    model : {"SPM", "SPMe"}
    parameter_set : str
        A PyBaMM parameter set (default Chen2020: LG M50, 5 Ah).
    soc : float
        Initial state of charge.
    """

    def __init__(self, model: str = "SPM", *, parameter_set: str = "Chen2020", soc: float = 1.0) -> None:
        models = {"SPM": pybamm.lithium_ion.SPM, "SPMe": pybamm.lithium_ion.SPMe}
        if model not in models:
            raise ValueError(f"model must be one of {sorted(models)}, got {model!r}")
        if not 0.0 <= soc <= 1.0:
            raise ValueError(f"soc must be within [0, 1], got {soc}")
        self._model = models[model]()
        self._parameters = pybamm.ParameterValues(parameter_set)
        self.nominal_capacity_ah = float(self._parameters["Nominal cell capacity [A.h]"])
        self.v_min = float(self._parameters["Lower voltage cut-off [V]"])
        self.v_max = float(self._parameters["Upper voltage cut-off [V]"])
        self._initial_soc = soc
        self._solution = None

    def _run(self, step: str) -> StepResult:
        before = self.state
        simulation = pybamm.Simulation(
            self._model, parameter_values=self._parameters, experiment=pybamm.Experiment([step])
        )
        if self._solution is None:
            self._solution = simulation.solve(initial_soc=self._initial_soc)
        else:
            self._solution = simulation.solve(starting_solution=self._solution)
        after = self.state
        reason = self._solution.cycles[-1].steps[-1].termination.lower()
        if reason == "final time":
            termination = None
        elif "voltage" in reason:
            termination = Termination.VOLTAGE_LIMIT
        elif "current" in reason:
            termination = Termination.CURRENT_CUTOFF
        else:  # a stoichiometry or concentration limit: the electrode is full or empty
            termination = Termination.FULL if after.charge_ah > before.charge_ah else Termination.EMPTY
        return StepResult(after.time_s - before.time_s, after.charge_ah - before.charge_ah, termination, after)

    @property
    def state(self) -> BatteryState:
        if self._solution is None:
            return BatteryState(0.0, self._initial_soc, 0.0, float("nan"), 0.0, 0.0)
        solution = self._solution
        charge_ah = -float(solution["Discharge capacity [A.h]"].entries[-1])
        return BatteryState(
            time_s=float(solution["Time [s]"].entries[-1]),
            soc=self._initial_soc + charge_ah / self.nominal_capacity_ah,
            current_a=-float(solution["Current [A]"].entries[-1]),
            voltage_v=float(solution["Voltage [V]"].entries[-1]),
            charge_ah=charge_ah,
            rc_voltage_v=float("nan"),
        )

    def constant_current(self, current_a: float, duration_s: float, *, v_limit: float | None = None) -> StepResult:
        if current_a == 0:
            return self.rest(duration_s)
        verb = "Charge" if current_a > 0 else "Discharge"
        limit = (self.v_max if current_a > 0 else self.v_min) if v_limit is None else v_limit
        return self._run(f"{verb} at {abs(current_a):.9g} A for {duration_s:.9g} seconds or until {limit:.9g} V")

    def constant_voltage(
        self, voltage_v: float, duration_s: float, *, current_cutoff_a: float | None = None
    ) -> StepResult:
        if not self.v_min <= voltage_v <= self.v_max:
            raise ValueError(f"voltage_v {voltage_v} V is outside the cell's window [{self.v_min}, {self.v_max}] V")
        until = f" or until {current_cutoff_a * 1e3:.9g} mA" if current_cutoff_a else ""
        return self._run(f"Hold at {voltage_v:.9g} V for {duration_s:.9g} seconds{until}")

    def rest(self, duration_s: float) -> StepResult:
        return self._run(f"Rest for {duration_s:.9g} seconds")
