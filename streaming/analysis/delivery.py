"""How a run's frames reached its analysis: live, from the recorder's file, or not at all.

- :class:`RecordedFrames`: the frames of one run that the recorder holds, fetched by stream and
  sequence number from its SWMR run file (found from the run's StreamResource, or by the same
  name in a folder given), waiting a while for frames it has not flushed yet.
- :class:`RunDelivery`: per stream, frames received live, fetched from the file, and lost
  to both; with the receive buffer's peak; as HDF5 attributes and a report line.
- :class:`SourceFrames`: which source frames a builder got a worker's pattern of.

A live analysis that falls behind a non-blocking publisher loses frames at its socket, never
at the recorder's (which keeps up: README, Performance), so the system of record gives them
back and the live result equals the replayed one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from streaming.errors import RunFileError
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import Frame

__all__ = ["RecordedFrames", "RunDelivery", "SourceFrames"]

logger = logging.getLogger(__name__)

_RETRY_S = 0.2  # between looks at a file the recorder is still writing (it flushes every 0.5 s)


class RecordedFrames:
    """The recorder's file of one run, as a source of the frames a consumer missed.

    Parameters
    ----------
    run_directory : Path or None
        Where the recorder writes (its ``--out``); None to take the folder the run's
        StreamResource names (the one its frame sink was told).
    timeout_s : float
        How long a fetch waits for frames the recorder has not flushed yet.
    """

    def __init__(self, *, run_directory: Path | None, timeout_s: float) -> None:
        self.run_directory = run_directory
        self.timeout_s = timeout_s
        self.path: Path | None = None
        self._given_up = False

    def stream_resource(self, doc: dict[str, Any]) -> None:
        """Learn the run file's path from a StreamResource document (``uri``, ``file://``)."""
        uri = doc.get("uri") or ""
        parsed = urlparse(uri)
        if parsed.scheme not in ("file", "") or not parsed.path:
            return
        path = Path(unquote(parsed.path))
        self.path = self.run_directory / path.name if self.run_directory is not None else path

    def fetch(self, stream: str, seqs: Iterable[int], timeout_s: float | None = None) -> list[Frame]:
        """The frames of ``stream`` with sequence numbers ``seqs`` that the file holds, in
        sequence order; waits up to ``timeout_s`` (by default the reader's) for those not
        flushed yet."""
        wanted = set(seqs)
        if not wanted or self.path is None or self._given_up:
            return []
        found: dict[int, Frame] = {}
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            try:  # opened anew each time: a live file grows, and its writer restructures it
                with RunFileReader(self.path) as reader:
                    for header, data in reader.frames_by_sequence(stream, wanted - found.keys()):
                        found[header.seq] = Frame(header, data)
            except (FileNotFoundError, RunFileError, OSError, KeyError) as error:
                if not self.path.exists() and time.monotonic() > deadline:
                    logger.warning("no recorded frames to fill gaps from: %s (%s)", self.path, error)
                    self._given_up = True  # later gaps of this run are not waited for
                    return []
            if len(found) == len(wanted) or time.monotonic() > deadline:
                return [found[seq] for seq in sorted(found)]
            time.sleep(_RETRY_S)


@dataclass
class RunDelivery:
    """How one run's frames reached its analysis, per stream."""

    live: Counter[str] = field(default_factory=Counter)
    backfilled: Counter[str] = field(default_factory=Counter)
    unrecovered: Counter[str] = field(default_factory=Counter)
    peak_backlog_frames: int = 0
    peak_buffer_bytes: int = 0
    source: str = ""  # the run file frames were fetched from

    def attributes(self) -> dict[str, Any]:
        """For the analysis' HDF5 group: totals over the streams, and the buffer's peak."""
        return {
            "frames_received_live": sum(self.live.values()),
            "frames_backfilled": sum(self.backfilled.values()),
            "frames_unrecovered": sum(self.unrecovered.values()),
            "peak_backlog_frames": self.peak_backlog_frames,
            "peak_buffer_mb": self.peak_buffer_bytes / 1e6,
            "backfill_source": self.source,
        }

    def report_line(self) -> str:
        """One line for a terminal."""
        line = (f"frames: {sum(self.live.values())} live, {sum(self.backfilled.values())} from the recorder's file, "
                f"{sum(self.unrecovered.values())} lost to both")  # fmt: skip
        if self.live:  # read from the file alone (reprocessed), nothing went through a buffer
            line += f"; receive buffer peak {self.peak_backlog_frames} frames ({self.peak_buffer_bytes / 1e6:.0f} MB)"
        return line


class SourceFrames:
    """Which frames of each source stream came as a derived frame (a worker's pattern carries
    its source's sequence number): a byte per frame, 0.2 MB per paper-size scan."""

    def __init__(self) -> None:
        self._seen: dict[str, bytearray] = {}

    def mark(self, stream: str, seq: int) -> None:
        flags = self._seen.setdefault(stream, bytearray())
        if seq >= len(flags):
            flags.extend(bytes(max(seq + 1 - len(flags), len(flags))))  # doubling: amortised O(1)
        flags[seq] = 1

    def missing(self, stream: str, n_frames: int) -> list[int]:
        """Sequence numbers below ``n_frames`` of ``stream`` that did not come."""
        flags = self._seen.get(stream, bytearray())
        return [seq for seq in range(n_frames) if seq >= len(flags) or not flags[seq]]
