"""The README, run as a newcomer copying it would (issue 21): every ``console`` command, every
``python`` block and the ``toml`` block, in the README's order, in one scratch folder.

- ``console``: each ``$ `` line goes through bash (the environment's ``bin`` first on PATH), in
  the scratch folder (``make`` lines in the repository, as the set-up says). A line whose
  comment says "until Ctrl-C" is a service a user leaves running in another terminal: it is
  started, the next line runs once it printed its first line (it listens), and it gets
  Ctrl-C when the next console block starts (or the README ends) and must then exit 0. Every
  other line must exit 0.
- ``python``: the block as a script, with the services started before it still running; the
  EPICS PVs it names are served by a simulated IOC on loopback (caproto, ``pv_ioc.py``).
- ``toml``: written to ``operando.toml``; it must load, and be the defaults (it says it is).
- ``text`` blocks (printed output, the layout) are not code; a block whose preceding line says
  ``<!-- readme-test: not run (WHY) -->`` is not run (the SLURM example: no cluster here).

Fast variants (``README_FULL=1`` runs every line as written): ``make demo`` runs the XCS-CT part
with one repeat into the scratch folder instead of the 9-minute default. Not run: ``make
test`` (what runs this), and ``make clean`` runs on a scratch copy of the Makefile, so that it
does not delete the environment under test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SERVICE_MARK = "until Ctrl-C"
RUNS = ("console", "python", "toml")
NOT_CODE = ("text", "")

FAST = {
    "make demo": 'make demo DEMO_ARGS="xcsct --set xcsct.max_repeats=1 --out {scratch}/make-demo"',
}
NOT_RUN = {"make test": "the command running this test"}


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # in README.md, of the opening fence
    not_run: str | None = None  # why, when the line before says ``<!-- readme-test: not run (WHY) -->``


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, dedented (a block inside a list item is indented)."""
    fence = re.compile(r"^( *)```(\w*)\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
    blocks = []
    for m in fence.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = re.search(r"<!-- readme-test: not run \((.+)\) -->", before)
        blocks.append(Block(m.group(2), textwrap.dedent(m.group(3)), text.count("\n", 0, m.start()) + 1,
                            reason.group(1) if reason else None))  # fmt: skip
    return blocks


def commands(block: Block) -> list[str]:
    return [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]


@dataclass
class Session:
    """The scratch folder and the services of the last console block."""

    scratch: Path
    env: dict[str, str]
    services: list[tuple[str, subprocess.Popen, Path]] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def run(self, command: str, *, cwd: Path | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess:
        """One line, as typed in a terminal: done when the command exits, even where it left a
        daemon behind holding its output (caproto-get spawns a Channel Access repeater), which
        then goes with the terminal."""
        log = self.scratch / "terminals" / f"{len(self.transcript):03d}"
        log.parent.mkdir(exist_ok=True)
        with open(f"{log}.out", "w+") as out, open(f"{log}.err", "w+") as err:
            process = subprocess.Popen(["bash", "-c", command], cwd=cwd or self.scratch, env=self.env, stdout=out,
                                       stderr=err, start_new_session=True)  # fmt: skip
            try:
                process.wait(timeout=timeout_s)
            finally:
                with contextlib.suppress(ProcessLookupError):  # what it left running
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        done = subprocess.CompletedProcess(command, process.returncode, Path(f"{log}.out").read_text(),
                                           Path(f"{log}.err").read_text())  # fmt: skip
        self.transcript.append(f"$ {command}\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
        printed = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{printed}"
        return done

    def start(self, command: str) -> None:
        """A service, as in a terminal of its own (its output to files: a pipe nobody reads fills)."""
        log = self.scratch / "terminals" / f"{len(self.transcript):03d}"
        log.parent.mkdir(exist_ok=True)
        with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
            process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.scratch, env=self.env,
                                       stdout=out, stderr=err, start_new_session=True)  # fmt: skip
        self.services.append((command, process, log))
        self.transcript.append(f"$ {command}  [service]")
        listening = Path(f"{log}.out")
        while "\n" not in listening.read_text():  # its first line: it listens
            assert process.poll() is None, f"`{command}` ended before it listened: {Path(f'{log}.err').read_text()}"
            time.sleep(0.05)

    def stop_services(self) -> None:
        for _, process, _ in self.services:  # Ctrl-C, as in each terminal
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        failed = []
        for command, process, log in self.services:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            if process.returncode != 0:
                printed = Path(f"{log}.out").read_text()[-2000:] + Path(f"{log}.err").read_text()[-2000:]
                failed.append(f"`{command}` exited {process.returncode} after Ctrl-C:\n{printed}")
        self.services.clear()
        assert not failed, "\n".join(failed)


def run_console(block: Block, session: Session) -> None:
    session.stop_services()  # a new block: the services of the last one get their Ctrl-C
    for command in commands(block):
        bare = command.split("#", 1)[0].strip()
        if bare in NOT_RUN:
            continue
        if bare == "make clean":
            _make_clean_on_a_copy(session)
        elif bare.startswith("make "):
            as_run = bare if os.environ.get("README_FULL") else FAST.get(bare, bare)
            session.run(as_run.format(scratch=session.scratch), cwd=ROOT, timeout_s=1800)
        elif SERVICE_MARK in command:
            session.start(command)
        else:
            done = session.run(command)
            if bare.startswith("operando analyze"):  # its progress bar went to the end
                assert re.search(r" (\d+)/\1 \[", done.stderr), done.stderr[-2000:]


def _make_clean_on_a_copy(session: Session) -> None:
    checkout = session.scratch / "clean-checkout"
    for made in (".venv", "demo-output", ".pytest_cache"):
        (checkout / made).mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", checkout)
    session.run("make clean", cwd=checkout)
    assert not [p.name for p in checkout.iterdir() if p.name != "Makefile"]


def run_python(block: Block, session: Session) -> None:
    pvs = re.findall(r"Epics\w*\(\s*\"([^\"]+)\"", block.text)
    ioc = None
    if pvs:  # a ring current of 400 mA: the beam is on
        ioc = subprocess.Popen([sys.executable, "-m", "tests.readme.pv_ioc", *(f"{pv}=400" for pv in pvs)], cwd=ROOT,
                               env=session.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert ioc.stdout.readline().startswith("serving"), ioc.communicate(timeout=30)
    try:
        script = session.scratch / f"readme_line{block.line}.py"
        script.write_text(block.text)
        done = session.run(f"{sys.executable} {script.name}")
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
    finally:
        if ioc is not None:
            ioc.terminate()
            ioc.communicate(timeout=30)


def run_toml(block: Block, session: Session) -> None:
    from streaming.app.config import load_config

    path = session.scratch / "operando.toml"
    path.write_text(block.text)
    assert load_config(path, []) == load_config(None, []), "the README's configuration is not the defaults"


def test_the_readme_has_only_blocks_this_test_runs_or_knows_are_not_code():
    blocks = readme_blocks(README.read_text())
    assert {block.language for block in blocks} <= {*RUNS, *NOT_CODE}, [(b.line, b.language) for b in blocks]
    for block in blocks:
        if block.language == "console":  # a console block without a command would run nothing
            assert commands(block), f"README.md:{block.line}: a console block with no `$ ` line"
    assert sum(block.language == "python" and block.not_run is None for block in blocks) >= 4
    assert [b.not_run for b in blocks if b.not_run] == ["it needs a SLURM cluster"]  # the only one, and why


@pytest.mark.timeout(3600)
def test_every_readme_example_runs_as_written(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg",
           "EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    session = Session(tmp_path, env)
    runners = {"console": run_console, "python": run_python, "toml": run_toml}
    try:
        for block in readme_blocks(README.read_text()):
            if block.language in runners and block.not_run is None:
                try:
                    runners[block.language](block, session)
                except AssertionError as failure:
                    raise AssertionError(f"README.md:{block.line} ({block.language}): {failure}") from None
    finally:
        session.stop_services()
    # what the examples say they make
    assert list((tmp_path / "reanalysed").glob("*.xrdct.h5")), "operando analyze --out reanalysed/ wrote nothing"
    assert list((tmp_path / "results").glob("*.xrdct.h5")), "operando consume --out results/ wrote nothing"
    assert len([p for p in (tmp_path / "data").glob("*.h5") if p.suffixes == [".h5"]]) >= 2
