"""``operando bench``: run the benchmarks of ``benchmarks/`` and tabulate their ratios.

Each benchmark is a module ``benchmarks/benchmark_<name>.py`` run as ``python -m`` in its own
process (so one's threads and caches do not colour another's), writing JSON results to
``benchmarks/results/``. The table lists every number whose key names a ratio (ours against
the reference tool, or against the detector's rate), read back from those files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streaming.errors import ConfigError

__all__ = ["benchmark_modules", "benchmarks_root", "ratio_rows", "run_benchmark"]


def benchmarks_root(cwd: Path) -> Path:
    """The checkout whose ``benchmarks/`` to run: ``cwd`` when it has one, else the checkout
    this package is installed from (``pip install -e .``), so the command works from any folder."""
    for root in (cwd, Path(__file__).resolve().parents[2]):
        if (root / "benchmarks").is_dir():
            return root
    return cwd


def benchmark_modules(root: Path) -> list[str]:
    """Names of the benchmarks under ``root/benchmarks`` (``benchmark_<name>.py``)."""
    folder = root / "benchmarks"
    if not folder.is_dir():
        raise ConfigError(f"bench: no benchmarks/ folder in {root} (run from a checkout of the repository)")
    return sorted(path.stem.removeprefix("benchmark_") for path in folder.glob("benchmark_*.py"))


def run_benchmark(root: Path, name: str) -> int:
    """Run one benchmark in its own process; returns its exit code."""
    return subprocess.call([sys.executable, "-m", f"benchmarks.benchmark_{name}"], cwd=root)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}" if path else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")
    else:
        yield path, node


def ratio_rows(results_dir: Path) -> list[tuple[str, str, float]]:
    """(benchmark, metric, value) for every ratio recorded in ``results_dir/*.json``."""
    rows = []
    for path in sorted(results_dir.glob("*.json")):
        results = json.loads(path.read_text())
        name = results.get("benchmark", path.stem)
        for key, value in _walk(results):
            leaf = key.rsplit("/", 1)[-1]
            if "ratio" in leaf and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append((str(name), key, float(value)))
    return rows
