"""The names of a run's files: its run file, and the analysis files linked from it.

- :func:`run_file_name`: ``YYYYmmdd-HHMMSS_scan<id>_<uid8>.h5``, from the run's start document
  (:func:`run_file_glob` finds it from the uid alone).
- :func:`analysis_file_name`: ``<run file stem>.<analysis>.h5``, beside the run file, and
  :func:`analysis_of`, its inverse.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

__all__ = ["analysis_file_name", "analysis_of", "run_file_glob", "run_file_name"]


def _safe_name(text: str, max_length: int = 36) -> str:
    # run uids come from the wire: never let one steer the path.
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:max_length] or "run"


def run_file_name(run_uid: str, start: dict[str, Any] | None) -> str:
    """File name of a run: ``YYYYmmdd-HHMMSS_scan<id>_<uid8>.h5`` (local time of the start)."""
    if start is None:
        return f"run_{_safe_name(run_uid)}.h5"
    started = start.get("time")
    if not (isinstance(started, (int, float)) and not isinstance(started, bool) and 0 <= started < 1e11):
        started = time.time()  # a start document from the wire with no usable time
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    scan_id = start.get("scan_id")
    scan = f"_scan{scan_id:05d}" if isinstance(scan_id, int) and not isinstance(scan_id, bool) else ""
    return f"{stamp}{scan}_{_safe_name(run_uid, 8)}.h5"


def run_file_glob(run_uid: str) -> str:
    """A glob matching the files :func:`run_file_name` gives ``run_uid`` (whatever its start),
    and the recorder's ``<name>.<n>.h5`` when it records the run again; analysis files too
    (:func:`analysis_of` tells them)."""
    return f"*_{_safe_name(run_uid, 8)}*.h5"


def analysis_file_name(run_file: Path | str, analysis: str) -> str:
    """Name of the file next to ``run_file`` where an analysis writes ``/entry/<analysis>``."""
    return f"{Path(run_file).stem}.{analysis}.h5"


_ANALYSIS_FILE = re.compile(r"^[^.]+\.(?P<analysis>[a-z]+)\.h5$")


def analysis_of(path: Path | str) -> str | None:
    """The analysis whose results file ``path`` is by its name (``"xrdct"`` for
    ``<stem>.xrdct.h5``), or None for any other name (a run file, ``<stem>.1.h5`` too)."""
    found = _ANALYSIS_FILE.match(Path(path).name)
    return found["analysis"] if found else None
