"""What every benchmark result records about the machine it ran on."""

from __future__ import annotations

import multiprocessing
import platform
import sys
from pathlib import Path


def machine_description() -> dict[str, object]:
    """CPU model, core count, Python and platform."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": multiprocessing.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
