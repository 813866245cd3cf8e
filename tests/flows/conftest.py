"""The flows' shared parts: a recorded XRD-CT run made by the main job, its analysis by
``operando analyze`` (the reference), and real ``operando`` processes started and stopped as
a user does (Ctrl-C)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

OPERANDO = [sys.executable, "-m", "streaming.app.cli"]
ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "xrdct.preset='tiny'"]


@dataclass
class Service:
    """A started ``operando`` process; ``out``/``err`` hold what it printed once stopped."""

    process: subprocess.Popen
    first_line: str
    out: str = ""
    err: str = ""
    collected: bool = False

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


def launch(argv: list[str]) -> Service:
    """Start a process; returns once it printed its first line (where it listens)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    return Service(process, process.stdout.readline())


def start(*args: str) -> Service:
    """Start ``operando ARGS`` (see :func:`launch`)."""
    return launch([*OPERANDO, *args])


def stop(service: Service, timeout_s: float = 120) -> Service:
    """Ctrl-C, as a user stops a service; collects what it printed."""
    if service.collected:
        return service
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGINT)
    return _collect(service, timeout_s)


def _collect(service: Service, timeout_s: float) -> Service:
    out, err = service.process.communicate(timeout=timeout_s)
    service.out, service.err, service.collected = service.first_line + out, err, True
    return service


@contextmanager
def services() -> Iterator[list[Service]]:
    """Every service started into the list is stopped on the way out, whatever happens."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in started:  # one Ctrl-C each: a second one would interrupt their clean stop
            if not service.collected and service.process.poll() is None:
                service.process.send_signal(signal.SIGINT)
        for service in started:
            if service.collected:
                continue
            try:
                _collect(service, 120)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.communicate()


@contextmanager
def live_flow(script: list[str], runs: Path, consume: list[str]) -> Iterator[tuple[Service, Service]]:
    """A user's RunEngine script (``python -m SCRIPT...``: its first line, the two endpoints it
    bound), with ``operando record`` into ``runs`` and ``operando consume CONSUME...`` beside
    it; yields (script, consume). Every process is stopped on the way out and must have exited
    cleanly."""
    with services() as started:
        user = launch([sys.executable, "-m", *script])
        started.append(user)
        documents, frames = user.first_line.split()
        started.append(start("record", "--docs", documents, "--frames", frames, "--out", str(runs)))
        analyses = start("consume", consume[0], "--docs", documents, "--frames", frames, *consume[1:])
        started.append(analyses)
        yield user, analyses
    failed = [service.err[-2000:] for service in started if service.returncode]
    assert not failed, failed


def replay_addresses(replay: Service) -> tuple[str, str]:
    """The document and frame endpoints a replay bound (its first line says)."""
    found = re.search(r"on (tcp://\S+) and \d+ on (tcp://\S+)", replay.first_line)
    assert found, replay.first_line
    return found.group(1), found.group(2)


def finish(service: Service, timeout_s: float = 600) -> Service:
    """Wait for a process that ends by itself (a replay: once its receivers confirmed)."""
    return _collect(service, timeout_s)


def assert_same_xrdct(sidecar: Path, reference: Path) -> None:
    """The live result is the replayed one: every pattern placed, none interpolated, the same
    sinogram, centre and reconstruction (to float32 rounding)."""
    with h5py.File(sidecar, "r") as ours, h5py.File(reference, "r") as theirs:
        a, b = ours["entry/xrdct"], theirs["entry/xrdct"]
        assert np.all(_per_scan(a, "patterns_interpolated") == 0)
        assert a["filled"][()].all()
        np.testing.assert_allclose(a["sinogram"][()], b["sinogram"][()], rtol=1e-6)
        np.testing.assert_allclose(_per_scan(a, "center_of_rotation_px"), _per_scan(b, "center_of_rotation_px"),
                                   atol=1e-6)  # fmt: skip
        reconstruction = b["reconstruction"][()]
        scale = float(np.abs(reconstruction).max())
        np.testing.assert_allclose(a["reconstruction"][()], reconstruction, atol=1e-5 * scale)


def _per_scan(group: h5py.Group, name: str) -> np.ndarray:
    """A per-scan value: a dataset with the scan axis (a series), or an attribute (one scan)."""
    return np.atleast_1d(group[name][()] if name in group else group.attrs[name])


@dataclass(frozen=True)
class RecordedRun:
    path: Path
    n_frames: int
    n_documents: int
    reference: Path  # ``operando analyze`` of it: the XRD-CT sidecar


@pytest.fixture(scope="session")
def xrdct_run(tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    """One operando XRD-CT scan of the tiny preset (3072 frames) by the main job, and its
    analysis by ``operando analyze``, which replays it in one process."""
    from streaming.store.runreader import RunFileReader

    out = tmp_path_factory.mktemp("recorded")
    done = subprocess.run([*OPERANDO, "demo", "xrdct", "--preset", "tiny", "--set", "xrdct.n_scans=1",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = (p for p in out.glob("*.h5") if p.suffixes == [".h5"])
    reference = tmp_path_factory.mktemp("analyzed")
    done = subprocess.run([*OPERANDO, "analyze", str(path), "--out", str(reference)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with RunFileReader(path) as reader:
        summary = reader.summary()
    (sidecar,) = reference.glob("*.xrdct.h5")
    return RecordedRun(path, sum(s.n_frames for s in summary.streams), summary.n_documents, sidecar)
