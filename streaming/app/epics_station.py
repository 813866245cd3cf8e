"""An end station on EPICS for the main job (``operando demo --epics``): its devices built from the
``[epics]`` section's PV prefixes (:mod:`devices.epics`), its detectors' frames brought onto the
frame channel by PV Access bridges (:mod:`.bridge`), and, unless ``epics.simulate`` is false, the
simulated IOC that serves it (``operando sim-ioc``) in a process of its own for the run.

:func:`epics_station` yields an :class:`EpicsStation` with the same names as the simulated
beamlines' (:mod:`devices.beamline`), so the main job builds the same plans on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from devices.beamline import sim_xcsct_beamline, sim_xrdct_beamline
from devices.motion import ClockDelay
from devices.sink import FrameSink
from streaming.errors import ConfigError, DeviceError
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher

from .analyses import XCSCT_ROWS
from .bridge import PvaFrameBridge, run_bridges
from .config import STATION_DEVICES, OperandoConfig

__all__ = ["EpicsStation", "epics_station", "frames_through_before_close"]

logger = logging.getLogger(__name__)

_DETECTORS = ("pilatus", "pco", "hexitec")
_IOC_START_S = 120.0


@dataclass
class EpicsStation:
    """An end station's EPICS devices, named as the simulated beamlines' are; ``simulated``: the
    simulated beamline of the same cell (the scan geometry, the HEXITEC's calibration);
    ``bridges``: its detectors' frame bridges."""

    devices: dict[str, Any]
    delay: ClockDelay
    nominal_capacity_ah: float
    simulated: Any = None
    bridges: list[PvaFrameBridge] = field(default_factory=list)
    ring: None = None  # no simulated ring: a beam dump is the facility's

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["devices"][name]
        except KeyError:
            raise AttributeError(name) from None

    @contextlib.contextmanager
    def bridging(self) -> Iterator[None]:
        """The bridges send their frames for the block (a run), in a thread of their own: the
        frame channel's socket is theirs meanwhile, and the caller's again after."""
        stop = threading.Event()
        thread = threading.Thread(target=run_bridges, args=(self.bridges, stop), name="bridges", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(30)


def _start_ioc(mode: str, config: OperandoConfig) -> subprocess.Popen:
    """``operando sim-ioc`` for ``mode``'s station, once it serves (its first line)."""
    options = ["--preset", config.xrdct.preset, "--seed", str(config.xrdct.seed)] if mode == "xrdct" else [
        "--seed", str(config.xcsct.seed), "--occupancy", str(config.xcsct.occupancy)]  # fmt: skip
    command = [sys.executable, "-m", "streaming.app.cli", "sim-ioc", "--station", mode, "--prefix",
               getattr(config.epics, f"{mode}_prefix"), "--speed", str(config.epics.speed), *options]  # fmt: skip
    with open(os.path.join(config.out_dir, f"sim-ioc-{mode}.log"), "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()  # it prints one line once it answers
    reader.join(_IOC_START_S)
    if process.poll() is not None or not lines or not lines[0].startswith("serving"):
        _stop(process)
        raise DeviceError(f"the simulated {mode} IOC did not start within {_IOC_START_S} s (exit "
                          f"{process.returncode}): see {config.out_dir}/sim-ioc-{mode}.log")  # fmt: skip
    return process


def _devices(mode: str, config: OperandoConfig, sink: FrameSink) -> dict[str, Any]:
    from devices.epics import (
        EpicsAreaDetector,
        EpicsAxis,
        EpicsBeamShaper,
        EpicsPotentiostat,
        EpicsShutter,
    )

    classes = {"translation": EpicsAxis, "rotation": EpicsAxis, "vertical": EpicsAxis, "shutter": EpicsShutter,
               "beam": EpicsBeamShaper, "potentiostat": EpicsPotentiostat}  # fmt: skip
    devices = {}
    for name in STATION_DEVICES[mode]:
        prefix = config.epics.prefix(mode, name)
        devices[name] = EpicsAreaDetector(prefix, name=name, sink=sink) if name in _DETECTORS else classes[name](
            prefix, name=name)  # fmt: skip
    for name, device in devices.items():
        try:
            device.wait_for_connection(timeout=30)
        except TimeoutError as error:
            raise DeviceError(f"{mode} {name}: no answer from its PVs under {device.prefix!r} ({error})") from None
    return devices


@contextlib.contextmanager
def epics_station(mode: str, config: OperandoConfig, documents: DocumentPublisher, frames: FramePublisher,
                  sink: FrameSink) -> Iterator[EpicsStation]:  # fmt: skip
    """``mode``'s end station on EPICS for the block (see the module docstring): its IOC started
    if simulated, its devices connected, its detectors' bridges subscribed to ``documents`` and
    sending onto ``frames`` while a run is under :meth:`EpicsStation.bridging`; all stopped when
    the block ends."""
    if config.beamline.beam_dump_at_s is not None:
        raise ConfigError("beamline.beam_dump_at_s: a simulated beam dump needs the simulated beamline, not --epics")
    with contextlib.ExitStack() as stack:
        if config.epics.simulate:
            stack.callback(_stop, _start_ioc(mode, config))
        # the simulated cell's beamline: the scan of its grid (the preset's), its cell's capacity
        # (with simulated IOCs), the HEXITEC's calibration (at a beamline: xcsct.calibration_dir)
        simulated = sim_xrdct_beamline(preset=config.xrdct.preset, seed=config.xrdct.seed) if mode == "xrdct" else \
            sim_xcsct_beamline(seed=config.xcsct.seed, occupancy=config.xcsct.occupancy, n_z=XCSCT_ROWS)  # fmt: skip
        devices = _devices(mode, config, sink)
        for device in devices.values():
            stack.callback(device.destroy)  # its channels and monitors go with the station
        capacity_ah = config.epics.capacity_ah or simulated.potentiostat.battery.nominal_capacity_ah
        station = EpicsStation(devices, ClockDelay(name="delay"), capacity_ah, simulated)
        for name in _DETECTORS:
            if name in devices:
                subscriber = stack.enter_context(DocumentSubscriber(documents.address))
                station.bridges.append(PvaFrameBridge(f"{devices[name].prefix}Pva1:Image", name, documents=subscriber,
                                                      frames=frames))  # fmt: skip
                stack.callback(station.bridges[-1].close)
        documents.wait_for_subscribers(1 + len(station.bridges), timeout_s=60)  # the recorder's and theirs
        for bridge in station.bridges:
            bridge.start()
        yield station


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()


def frames_through_before_close(plan: Any, station: EpicsStation, timeout_s: float = 30.0) -> Any:
    """``plan``, its run closed only once the bridges have handled every frame its detectors
    made (at most ``timeout_s`` later): the stop document must not overtake them, or the
    recorder would close the run file without its last frames."""
    import bluesky.plan_stubs as bps
    from bluesky.preprocessors import plan_mutator

    pairs = [(bridge, station.devices[bridge.stream]) for bridge in station.bridges]

    def through() -> bool:
        try:
            return all(bridge.handled_unique_id >= detector.array_counter.get() for bridge, detector in pairs)
        except Exception:  # the IOC is gone (whatever the control layer raises then): no more frames will come
            return True

    def before_close(msg: Any) -> tuple[Any, None]:
        if msg.command != "close_run" or msg.kwargs.get("exit_status", "success") != "success":
            return None, None  # a failed run closes at once: its error must not wait for frames

        def wait_then_close() -> Any:
            deadline = time.monotonic() + timeout_s
            while not through():
                if time.monotonic() > deadline:
                    logger.warning("the run closes without the frames its detectors made in the last %.0f s: the "
                                   "bridges did not have them", timeout_s)  # fmt: skip
                    break
                yield from bps.sleep(0.05)
            return (yield msg)

        return wait_then_close(), None

    return plan_mutator(plan, before_close)
