"""One TOML file configures an experiment: endpoints, recording, XRD-CT, XCS-CT, potentiostat, EPICS.

Every section and key has a default (:class:`OperandoConfig`), so an empty file, or none, is
a valid configuration. A value can be overridden on the command line as ``section.key=value``
(the value is read as TOML, so ``xrdct.trim_percentiles=[10, 90]`` works). A mistake gives
one :class:`~streaming.errors.ConfigError` naming the key and the problem: an unknown key
(with the nearest known one), a wrong type, a value outside its range, a voltage limit outside
the cell's safe window, a PONI file that does not exist.

Example::

    [xrdct]
    preset = "small"
    poni = "calibration/geometry.poni"
    trim_percentiles = [5, 95]

    [potentiostat]
    v_min = 2.75
    v_max = 4.2
    protocol = "CCCV charge to 4.2 V at C/20 until I < 5 %; rest 10 min; CC discharge to 2.75 V at C/2"
"""

from __future__ import annotations

import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from streaming.errors import ConfigError
from streaming.wire.security import DEFAULT_CLIENT, Security, use_security
from streaming.wire.transport import DEFAULT_DOCUMENT_ADDRESS, DEFAULT_FRAME_ADDRESS

__all__ = [
    "BeamlineConfig",
    "EndpointsConfig",
    "EpicsConfig",
    "LiveConfig",
    "OperandoConfig",
    "PotentiostatConfig",
    "SecurityConfig",
    "XcsctConfig",
    "XrdctConfig",
    "load_config",
]

# the cells' own windows (simulators.battery): no configuration may reach outside them
SAFE_VOLTAGE_WINDOW_V = (2.5, 4.3)
PRESETS = ("tiny", "small", "paper")


def _check(condition: bool, key: str, problem: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {problem}")


@dataclass(frozen=True)
class EndpointsConfig:
    """ZeroMQ endpoints of the two channels."""

    documents: str = DEFAULT_DOCUMENT_ADDRESS
    frames: str = DEFAULT_FRAME_ADDRESS

    def __post_init__(self) -> None:
        for key in ("documents", "frames"):
            value = getattr(self, key)
            problem = f"must be a ZeroMQ endpoint like tcp://127.0.0.1:5577, got {value!r}"
            _check("://" in value, f"endpoints.{key}", problem)


@dataclass(frozen=True)
class XrdctConfig:
    """The XRD-CT scan and its live reduction."""

    preset: str = "small"
    poni: Path | None = None
    exposure_s: float = 0.01
    trim_percentiles: tuple[float, float] = (5.0, 95.0)
    integration_method: str = "trimmed_mean"
    workers: int = 1
    center_of_rotation_px: float | None = None
    monitor: str | None = None  # a beam monitor reading recorded with each frame, patterns divided by it
    n_scans: int = 2
    interval_s: float = 3600.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.n_scans >= 1, "xrdct.n_scans", f"must be >= 1, got {self.n_scans}")
        _check(self.interval_s >= 0, "xrdct.interval_s", f"must be >= 0 s, got {self.interval_s}")
        _check(self.preset in PRESETS, "xrdct.preset", f"must be one of {PRESETS}, got {self.preset!r}")
        _check(self.poni is None or Path(self.poni).is_file(), "xrdct.poni", f"no such file: {self.poni}")
        _check(0 < self.exposure_s <= 10, "xrdct.exposure_s", f"must be within (0, 10] s, got {self.exposure_s}")
        low, high = self.trim_percentiles
        _check(0 <= low < high <= 100, "xrdct.trim_percentiles", f"need 0 <= low < high <= 100, got {[low, high]}")
        methods = ("trimmed_mean", "mean", "sigma_clip")
        _check(self.integration_method in methods, "xrdct.integration_method", f"must be one of {methods}")
        _check(1 <= self.workers <= 64, "xrdct.workers", f"must be within [1, 64], got {self.workers}")


@dataclass(frozen=True)
class XcsctConfig:
    """The alternating XCT / XCS acquisitions."""

    n_projections: int = 180
    xct_exposure_s: float = 0.02
    flats: int = 10
    darks: int = 10
    xcs_exposure_s: float = 0.5
    xcs_positions: int = 3
    occupancy: float = 0.01
    max_repeats: int | None = 4
    interval_s: float = 1800.0
    seed: int = 0
    calibration_dir: Path | None = None  # HEXITEC gradients/intercepts/darks; default out_dir/calibration

    def __post_init__(self) -> None:
        _check(self.n_projections >= 2, "xcsct.n_projections", f"must be >= 2, got {self.n_projections}")
        for key in ("xct_exposure_s", "xcs_exposure_s"):
            value = getattr(self, key)
            _check(0 < value <= 60, f"xcsct.{key}", f"must be within (0, 60] s, got {value}")
        for key in ("flats", "darks"):
            _check(getattr(self, key) >= 0, f"xcsct.{key}", f"must be >= 0, got {getattr(self, key)}")
        _check(self.xcs_positions >= 1, "xcsct.xcs_positions", f"must be >= 1, got {self.xcs_positions}")
        _check(0 < self.occupancy < 0.5, "xcsct.occupancy", f"must be within (0, 0.5), got {self.occupancy}")
        _check(self.max_repeats is None or self.max_repeats >= 1, "xcsct.max_repeats", "must be >= 1")
        _check(self.interval_s >= 0, "xcsct.interval_s", f"must be >= 0 s, got {self.interval_s}")


@dataclass(frozen=True)
class PotentiostatConfig:
    """Safe window and the cycling protocol (text, see :func:`devices.protocol.parse_protocol`)."""

    v_min: float = 2.75
    v_max: float = 4.2
    max_current_c_rate: float = 2.0
    sample_interval_s: float = 30.0
    protocol: str = "CCCV charge to 4.2 V at C/2 until I < 5 %; rest 10 min; CC discharge to 2.75 V at C/2"

    def __post_init__(self) -> None:
        low, high = SAFE_VOLTAGE_WINDOW_V
        for key in ("v_min", "v_max"):
            value = getattr(self, key)
            problem = f"{value} V is outside the safe range [{low}, {high}] V"
            _check(low <= value <= high, f"potentiostat.{key}", problem)
        _check(self.v_min < self.v_max, "potentiostat.v_min", f"must be below v_max ({self.v_max} V)")
        _check(0 < self.max_current_c_rate <= 10, "potentiostat.max_current_c_rate", "must be within (0, 10] C")
        _check(self.sample_interval_s > 0, "potentiostat.sample_interval_s", "must be > 0 s")
        from devices.protocol import parse_protocol

        try:  # read it now (C-rates against a unit capacity), before anything starts
            parse_protocol(self.protocol, capacity_ah=1.0)
        except ConfigError as error:
            raise ConfigError(f"potentiostat.{error}") from None


@dataclass(frozen=True)
class BeamlineConfig:
    """The simulated beamline's interruptions: a beam dump ``beam_dump_s`` long at
    ``beam_dump_at_s`` seconds of experiment time into each mode's run (none by default); the
    scans suspend meanwhile (:func:`plans.suspend_on_beam_loss`)."""

    beam_dump_at_s: float | None = None
    beam_dump_s: float = 600.0

    def __post_init__(self) -> None:
        at = self.beam_dump_at_s
        _check(at is None or at >= 0, "beamline.beam_dump_at_s", f"must be >= 0 s, got {at}")
        _check(self.beam_dump_s > 0, "beamline.beam_dump_s", f"must be > 0 s, got {self.beam_dump_s}")

    @property
    def beam_dumps(self) -> tuple[tuple[float, float], ...]:
        """``(start, duration)`` of each dump, seconds from the run's start (for the beamline)."""
        return () if self.beam_dump_at_s is None else ((self.beam_dump_at_s, self.beam_dump_s),)


STATION_DEVICES = {
    "xrdct": ("translation", "rotation", "shutter", "beam", "potentiostat", "pilatus"),
    "xcsct": ("translation", "rotation", "vertical", "shutter", "beam", "potentiostat", "pco", "hexitec"),
}
_AXES = ("translation", "rotation", "vertical")  # motor records: the prefix is the record's name


@dataclass(frozen=True)
class EpicsConfig:
    """Where the end stations' PVs are, for ``operando demo --epics`` (:mod:`devices.epics`).

    Each device's PV prefix is its station's prefix and its name (``XRD:translation``, a motor
    record; ``XRD:shutter:``, ``XRD:pilatus:`` with ``cam1:`` and ``Pva1:Image`` under it), or
    what ``pvs`` says: ``"station.device=PREFIX"`` entries (``"xrdct.translation=BL12I-MO-HEX-01:X"``).
    ``simulate``: serve the stations from simulated IOCs (``operando sim-ioc``, ``speed`` cell
    seconds per wall second) for the run; false at a beamline. ``capacity_ah``: the cells'
    nominal capacity, for the protocol's C-rates (0: the simulated cells')."""

    xrdct_prefix: str = "XRD:"
    xcsct_prefix: str = "XCS:"
    pvs: tuple[str, ...] = ()
    simulate: bool = True
    speed: float = 1.0
    capacity_ah: float = 0.0

    def __post_init__(self) -> None:
        _check(self.speed > 0, "epics.speed", f"must be > 0, got {self.speed}")
        _check(self.capacity_ah >= 0, "epics.capacity_ah", f"must be >= 0 Ah, got {self.capacity_ah}")
        _check(self.simulate or self.capacity_ah > 0, "epics.capacity_ah", "give the cell's nominal capacity (Ah) "
               "when epics.simulate is false: the protocol's C-rates are currents of it")  # fmt: skip
        for station in STATION_DEVICES:
            prefix = getattr(self, f"{station}_prefix")
            _check(prefix.strip() == prefix and prefix != "", f"epics.{station}_prefix",
                   f"must be a PV prefix without spaces, got {prefix!r}")  # fmt: skip
        _check(not (self.simulate and self.pvs), "epics.pvs", "the simulated IOCs serve each device under its "
               "station's prefix: give pvs with epics.simulate = false")  # fmt: skip
        for entry in self.pvs:
            device, sep, prefix = entry.partition("=")
            station, _, name = device.strip().partition(".")
            _check(sep and prefix.strip() and name in STATION_DEVICES.get(station, ()), "epics.pvs",
                   f"{entry!r} is not 'station.device=PREFIX' with a device of "
                   f"{', '.join(f'{s}.{d}' for s, names in STATION_DEVICES.items() for d in names)}")  # fmt: skip

    def prefix(self, station: str, device: str) -> str:
        """The PV prefix of ``device`` of ``station`` (see the class docstring)."""
        for entry in self.pvs:
            key, _, prefix = entry.partition("=")
            if key.strip() == f"{station}.{device}":
                return prefix.strip()
        base = getattr(self, f"{station}_prefix")
        return f"{base}{device}" if device in _AXES else f"{base}{device}:"


@dataclass(frozen=True)
class LiveConfig:
    """How the live analyses receive: their buffer, and the frames they missed fetched from
    the recorder's files (:mod:`streaming.analysis.consumer`)."""

    buffer_mb: int = 2048  # frames received and not yet analysed, at most (see streaming.wire.receiver)
    backfill: bool = True
    run_dir: Path | None = None  # the recorder's folder, if not where the runs' StreamResources say
    backfill_timeout_s: float = 10.0
    products: str = "tcp://127.0.0.1:5579"  # where the analyses publish what they hold (dashboards); "" for nowhere

    def __post_init__(self) -> None:
        _check(self.products == "" or self.products.startswith(("tcp://", "ipc://", "inproc://")), "live.products",
               f"must be a ZeroMQ endpoint (tcp://host:port) or empty, got {self.products!r}")  # fmt: skip
        _check(self.buffer_mb >= 1, "live.buffer_mb", f"must be >= 1 MB, got {self.buffer_mb}")
        _check(self.run_dir is None or Path(self.run_dir).is_dir(), "live.run_dir", f"no such folder: {self.run_dir}")
        timeout = self.backfill_timeout_s
        _check(timeout >= 0, "live.backfill_timeout_s", f"must be >= 0 s, got {timeout}")

    def consumer_options(self) -> dict[str, Any]:
        """The :class:`~streaming.analysis.consumer.Consumer` keywords these settings make."""
        return {"max_buffer_bytes": self.buffer_mb << 20, "backfill": self.backfill, "run_directory": self.run_dir,
                "backfill_timeout_s": self.backfill_timeout_s}  # fmt: skip


@dataclass(frozen=True)
class SecurityConfig:
    """CURVE on every channel (:mod:`streaming.wire.security`): the key folder ``operando keys``
    makes, whose client pair this host uses, and whether binding beyond loopback without keys is
    allowed. ``--keys``, ``--client`` and ``--insecure`` on the command line win."""

    keys: Path | None = None
    client: str = DEFAULT_CLIENT
    insecure: bool = False

    def __post_init__(self) -> None:
        _check(self.keys is None or Path(self.keys).is_dir(), "security.keys", f"no such folder: {self.keys} "
               "(make one with `operando keys DIR`)")  # fmt: skip

    def install(self, options: Any = None) -> Security:
        """Install these settings, under the command line's ``options`` (``keys``, ``client``,
        ``insecure`` attributes, when given), for every socket of this process."""
        security = Security(keys=getattr(options, "keys", None) or self.keys,
                            client=getattr(options, "client", None) or self.client,
                            insecure=bool(getattr(options, "insecure", False)) or self.insecure)  # fmt: skip
        use_security(security)
        return security


@dataclass(frozen=True)
class OperandoConfig:
    """The whole configuration; every section optional."""

    endpoints: EndpointsConfig = field(default_factory=EndpointsConfig)
    xrdct: XrdctConfig = field(default_factory=XrdctConfig)
    xcsct: XcsctConfig = field(default_factory=XcsctConfig)
    potentiostat: PotentiostatConfig = field(default_factory=PotentiostatConfig)
    beamline: BeamlineConfig = field(default_factory=BeamlineConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    epics: EpicsConfig = field(default_factory=EpicsConfig)
    out_dir: Path = Path("demo-output")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "none")


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """``value`` from TOML as the field's type, or a ConfigError naming ``key``."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option)
        if origin is tuple:
            item_types = typing.get_args(option)
            if isinstance(value, list) and item_types[-1:] == (Ellipsis,):  # any length, one type
                return tuple(_coerce(key, item_types[0], v) for v in value)
            if isinstance(value, list) and len(value) == len(item_types):
                return tuple(_coerce(key, t, v) for t, v in zip(item_types, value, strict=True))
        elif option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
        elif option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif option is Path and isinstance(value, str):
            return Path(value)
        elif option in (str, bool) and type(value) is option:
            return value
    expected = " or ".join(_type_name(o) for o in options if o is not type(None))
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known: {', '.join(sorted(known))}"
            raise ConfigError(f"{key}: unknown key{hint}")
        annotation = hints[name]
        if is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a [{key}] table, got {value!r}")
            kwargs[name] = _build(annotation, value, f"{key}.")
        else:
            kwargs[name] = _coerce(key, annotation, value)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {error}") from None


def _apply_override(tree: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{override}: an override is section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word is a string
    *sections, name = key.strip().split(".")
    node = tree
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: '{section}' is not a section")
    node[name] = value


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> OperandoConfig:
    """Read ``path`` (TOML; None for the defaults), apply ``section.key=value`` overrides,
    validate everything; raises :class:`ConfigError` naming the first bad key."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            tree = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such configuration file") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML ({error})") from None
        poni = tree.get("xrdct", {}).get("poni") if isinstance(tree.get("xrdct"), dict) else None
        if isinstance(poni, str) and not Path(poni).is_absolute():
            # relative to the configuration file, where the user wrote it
            tree["xrdct"]["poni"] = str(path.parent / poni)
    for override in overrides:
        _apply_override(tree, override)
    return _build(OperandoConfig, tree, "")
