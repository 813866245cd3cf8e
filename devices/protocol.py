"""Cycling protocols as data: constant current, constant voltage and rest steps.

A :class:`CyclingProtocol` is a tuple of steps that a potentiostat runs in order. Currents
are signed (> 0 charges the cell), in amperes; C-rates are resolved against the cell's
nominal capacity when the protocol is built (:func:`parse_protocol`, :meth:`CurrentStep.at_c_rate`).
:meth:`CyclingProtocol.validate` checks every step against the potentiostat's
:class:`PotentiostatLimits` before anything runs.

The text form is what a scientist writes in a logbook::

    CCCV charge to 4.2 V at C/20 until I < 5 %; rest 10 min; CC discharge to 2.75 V at C/2
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from streaming.errors import ConfigError, LimitError

__all__ = [
    "CurrentStep",
    "CyclingProtocol",
    "PotentiostatLimits",
    "RestStep",
    "VoltageStep",
    "parse_protocol",
]


@dataclass(frozen=True)
class PotentiostatLimits:
    """The safe operating window of a cell on a potentiostat.

    Attributes
    ----------
    v_min, v_max : float
        Terminal voltage window, V; no step may drive the cell outside it.
    max_current_a : float
        Compliance: the largest |current|, A.
    """

    v_min: float
    v_max: float
    max_current_a: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.v_min) and math.isfinite(self.v_max) and self.v_min < self.v_max):
            raise ConfigError(f"potentiostat.limits: need v_min < v_max, got {self.v_min}, {self.v_max}")
        if not (math.isfinite(self.max_current_a) and self.max_current_a > 0):
            raise ConfigError(f"potentiostat.limits: max_current_a must be > 0, got {self.max_current_a}")


def _check_duration(value: float, what: str) -> None:
    if not (value > 0 and not math.isnan(value)):
        raise ValueError(f"{what} must be > 0 s, got {value}")


@dataclass(frozen=True)
class CurrentStep:
    """Constant current ``current_a`` until the voltage reaches ``v_limit`` (or ``max_duration_s``)."""

    current_a: float
    v_limit: float
    max_duration_s: float = math.inf
    label: str = "CC"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.current_a) and self.current_a != 0):
            raise ValueError(f"current_a must be finite and non-zero (rest for none), got {self.current_a}")
        _check_duration(self.max_duration_s, "max_duration_s")

    @classmethod
    def at_c_rate(cls, c_rate: float, capacity_ah: float, v_limit: float, **kwargs) -> CurrentStep:
        """A step at ``c_rate`` (signed: > 0 charges) of a cell of ``capacity_ah``."""
        return cls(current_a=c_rate * capacity_ah, v_limit=v_limit, **kwargs)

    def check(self, limits: PotentiostatLimits) -> None:
        if abs(self.current_a) > limits.max_current_a:
            raise LimitError(f"{self.label}: |{self.current_a} A| exceeds the {limits.max_current_a} A compliance")
        if not limits.v_min <= self.v_limit <= limits.v_max:
            raise LimitError(
                f"{self.label}: voltage limit {self.v_limit} V is outside [{limits.v_min}, {limits.v_max}] V"
            )


@dataclass(frozen=True)
class VoltageStep:
    """Hold ``voltage_v`` until |current| < ``cutoff_current_a`` (or ``max_duration_s``)."""

    voltage_v: float
    cutoff_current_a: float
    max_duration_s: float = math.inf
    label: str = "CV"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.voltage_v) and self.cutoff_current_a > 0):
            raise ValueError(
                f"need a finite voltage and a cut-off current > 0, got {self.voltage_v}, {self.cutoff_current_a}"
            )
        _check_duration(self.max_duration_s, "max_duration_s")

    def check(self, limits: PotentiostatLimits) -> None:
        if not limits.v_min <= self.voltage_v <= limits.v_max:
            raise LimitError(f"{self.label}: {self.voltage_v} V is outside [{limits.v_min}, {limits.v_max}] V")
        if self.cutoff_current_a > limits.max_current_a:
            raise LimitError(
                f"{self.label}: cut-off {self.cutoff_current_a} A exceeds the {limits.max_current_a} A compliance"
            )


@dataclass(frozen=True)
class RestStep:
    """Open circuit for ``duration_s``."""

    duration_s: float
    label: str = "rest"

    def __post_init__(self) -> None:
        _check_duration(self.duration_s, "duration_s")
        if math.isinf(self.duration_s):
            raise ValueError("a rest needs a finite duration")

    @property
    def max_duration_s(self) -> float:
        return self.duration_s

    def check(self, limits: PotentiostatLimits) -> None:
        """A rest is always within limits."""


Step = CurrentStep | VoltageStep | RestStep


@dataclass(frozen=True)
class CyclingProtocol:
    """Steps run in order, ``repeats`` times."""

    steps: tuple[Step, ...]
    repeats: int = 1
    name: str = "protocol"

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise ValueError("a protocol needs at least one step")
        if not (isinstance(self.repeats, int) and self.repeats >= 1):
            raise ValueError(f"repeats must be an int >= 1, got {self.repeats!r}")

    @property
    def all_steps(self) -> tuple[Step, ...]:
        return self.steps * self.repeats

    def validate(self, limits: PotentiostatLimits) -> None:
        """Raise :class:`LimitError` naming the first step outside ``limits``."""
        for number, step in enumerate(self.steps, 1):
            try:
                step.check(limits)
            except LimitError as error:
                raise LimitError(f"protocol {self.name!r}, step {number}: {error}") from None

    def describe(self) -> list[dict[str, float | str]]:
        """The steps as plain data (for start documents and HDF5 attributes)."""
        return [{"type": type(step).__name__, **vars(step)} for step in self.steps]


_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}
_CURRENT_UNITS = {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "µA": 1e-6}


def _rate(text: str, capacity_ah: float, clause: str) -> float:
    """'C/20', '0.5C', 'C', '10 mA', '0.2 A' → amperes (unsigned)."""
    text = text.strip()
    if m := re.fullmatch(rf"C\s*/\s*{_NUMBER}", text):
        return capacity_ah / float(m[1])
    if m := re.fullmatch(rf"{_NUMBER}?\s*C", text):
        return capacity_ah * float(m[1] or 1.0)
    if m := re.fullmatch(rf"{_NUMBER}\s*(A|mA|uA|µA)", text):
        return float(m[1]) * _CURRENT_UNITS[m[2]]
    raise ConfigError(f"protocol: cannot read the rate {text!r} in {clause!r} (C/20, 0.5C, 10 mA, 0.2 A)")


def _duration(text: str, clause: str) -> float:
    if m := re.fullmatch(rf"{_NUMBER}\s*(s|min|h)", text.strip()):
        return float(m[1]) * _DURATION_UNITS[m[2]]
    raise ConfigError(f"protocol: cannot read the duration {text!r} in {clause!r} (30 s, 10 min, 2 h)")


_CC = re.compile(
    rf"(?P<kind>CCCV|CC)\s+(?P<dir>charge|discharge)\s+to\s+{_NUMBER}\s*V\s+at\s+(?P<rate>[^;]+?)"
    rf"(?:\s+until\s+I\s*<\s*(?P<cut>{_NUMBER})\s*(?P<cut_unit>%|A|mA|uA|µA))?"
    rf"(?:\s+for\s+(?P<max>{_NUMBER}\s*(?:s|min|h)))?",
    re.IGNORECASE,
)
_CV = re.compile(
    rf"CV\s+at\s+{_NUMBER}\s*V\s+until\s+I\s*<\s*(?P<cut>{_NUMBER})\s*(?P<unit>A|mA|uA|µA)"
    rf"(?:\s+for\s+(?P<max>{_NUMBER}\s*(?:s|min|h)))?",
    re.IGNORECASE,
)
_REST = re.compile(rf"rest\s+(?:for\s+)?(?P<d>{_NUMBER}\s*(?:s|min|h))", re.IGNORECASE)


def _clause_steps(clause: str, capacity_ah: float) -> list[Step]:
    if m := _CC.fullmatch(clause):
        sign = 1.0 if m["dir"].lower() == "charge" else -1.0
        voltage = float(m[3])
        current = sign * _rate(m["rate"], capacity_ah, clause)
        max_s = _duration(m["max"], clause) if m["max"] else math.inf
        label = f"CC {m['dir'].lower()}"
        steps: list[Step] = [CurrentStep(current, voltage, max_s, label=label)]
        if m["kind"].upper() == "CCCV":
            if m["cut"] is None:
                raise ConfigError(f"protocol: CCCV needs 'until I < ...' in {clause!r}")
            cut = float(m["cut"])
            cutoff = abs(current) * cut / 100 if m["cut_unit"] == "%" else cut * _CURRENT_UNITS[m["cut_unit"]]
            steps.append(VoltageStep(voltage, cutoff, label=f"CV {m['dir'].lower()}"))
        elif m["cut"] is not None:
            raise ConfigError(f"protocol: 'until I < ...' needs CCCV or CV, in {clause!r}")
        return steps
    if m := _CV.fullmatch(clause):
        cutoff = float(m["cut"]) * _CURRENT_UNITS[m["unit"]]
        return [VoltageStep(float(m[1]), cutoff, _duration(m["max"], clause) if m["max"] else math.inf)]
    if m := _REST.fullmatch(clause):
        return [RestStep(_duration(m["d"], clause))]
    raise ConfigError(
        f"protocol: cannot read {clause!r}; expected e.g. 'CCCV charge to 4.2 V at C/20 until I < 5 %', "
        "'CC discharge to 2.75 V at C/2', 'CV at 4.2 V until I < 1 mA', 'rest 10 min'"
    )


def parse_protocol(text: str, *, capacity_ah: float, repeats: int = 1, name: str | None = None) -> CyclingProtocol:
    """Read a protocol written as clauses separated by ';' (see the module docstring).

    C-rates are resolved against ``capacity_ah``. Raises :class:`ConfigError` naming the clause
    it cannot read.
    """
    if not capacity_ah > 0:
        raise ConfigError(f"protocol: capacity_ah must be > 0, got {capacity_ah}")
    clauses = [clause.strip() for clause in text.split(";") if clause.strip()]
    if not clauses:
        raise ConfigError("protocol: no steps given")
    steps = [step for clause in clauses for step in _clause_steps(clause, capacity_ah)]
    return CyclingProtocol(tuple(steps), repeats=repeats, name=name or text.strip())
