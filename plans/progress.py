"""A progress bar for any run: frames described so far (from StreamDatum documents), events,
and the total when the start document says it (``num_points``).

``RE.subscribe(ScanProgress())`` shows a tqdm bar with rate and ETA; the counts stay readable
afterwards (``frames``, ``events``) for scripts and tests.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

from event_model import DocumentRouter
from tqdm import tqdm

__all__ = ["ScanProgress"]


class ScanProgress(DocumentRouter):
    """Progress of the open run, counted in detector frames.

    Parameters
    ----------
    file : text stream
        Where the bar is drawn (default stderr).
    disable : bool
        Count without drawing.
    """

    def __init__(self, *, file: TextIO | None = None, disable: bool = False) -> None:
        super().__init__()
        self._file = file or sys.stderr
        self._disable = disable
        self._bar: tqdm | None = None
        self.frames: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self._streams: dict[str, str] = {}
        self._resources: dict[str, str] = {}

    def start(self, doc: dict[str, Any]) -> None:
        self.frames.clear()
        self.events.clear()
        total = doc.get("num_points")
        interactive = bool(getattr(self._file, "isatty", lambda: False)())
        self._bar = tqdm(
            total=total if isinstance(total, int) and total > 0 else None, unit="frame", file=self._file,
            disable=self._disable, desc=f"{doc.get('plan_name', 'run')} #{doc.get('scan_id', '?')}", leave=True,
            mininterval=0.5 if interactive else 5.0,  # a log (not a terminal) gets a line every 5 s
            dynamic_ncols=True,
        )  # fmt: skip

    def descriptor(self, doc: dict[str, Any]) -> None:
        self._streams[doc["uid"]] = doc.get("name", "?")

    def stream_resource(self, doc: dict[str, Any]) -> None:
        self._resources[doc["uid"]] = doc["data_key"]

    def stream_datum(self, doc: dict[str, Any]) -> None:
        n = doc["indices"]["stop"] - doc["indices"]["start"]
        self.frames[self._resources.get(doc["stream_resource"], "?")] += n
        if self._bar is not None:
            self._bar.update(n)

    def event(self, doc: dict[str, Any]) -> None:
        stream = self._streams.get(doc["descriptor"], "?")
        self.events[stream] += 1
        if self._bar is not None:
            self._bar.set_postfix({name: count for name, count in self.events.items()}, refresh=False)

    def stop(self, doc: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(doc.get("exit_status", ""), refresh=False)
            self._bar.close()
            self._bar = None
