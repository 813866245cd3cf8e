"""Progress on the terminal for the commands that take more than a few seconds.

- :class:`AnalysisProgress`: one tqdm bar per analysed run file, fed by the consumers'
  counts (frames analysed, with rate and ETA) and the analyses' own words (``scan 1: 37/48
  lines, centre 31.9 px``), polled from a thread of its own so that the analysis never waits
  for the terminal.
- :func:`write_above_bars`: lines (the potentiostat's live table) written above the progress
  bars instead of through them (``tqdm.write``: the bars are cleared, the line written, the
  bars drawn again).

Every bar goes to stderr and is off with ``-q``; a bar on a file that is not a terminal
(a log, CI) is drawn at most every few seconds (tqdm's ``mininterval``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from streaming.analysis.consumer import Consumer

__all__ = ["AnalysisProgress", "progress_bar", "write_above_bars"]


class _Bar(tqdm):
    """Shown after ``delay`` (a command that fails at once prints its one error line alone),
    and then at its end even when that came sooner (a log keeps the final count)."""

    def close(self) -> None:
        if not self.disable and self.leave and self.last_print_t < self.start_t + self.delay:
            self.delay = 0  # tqdm's close draws nothing for a bar it never showed
        super().close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:  # fmt: skip
        if exc_type is not None:
            self.leave = False  # a failed command says why in one line, with no half bar above it
        super().__exit__(exc_type, exc, traceback)


def progress_bar(total: int | None, desc: str, *, quiet: bool = False, unit: str = "frame",
                 file: TextIO | None = None) -> tqdm:  # fmt: skip
    """A tqdm bar as every command draws it: on stderr, redrawn at most twice a second on a
    terminal and every 5 s elsewhere (a log stays short), off with ``quiet``."""
    out = file or sys.stderr
    interactive = bool(getattr(out, "isatty", lambda: False)())
    return _Bar(total=total, desc=desc, unit=unit, unit_scale=False, file=out, disable=quiet, dynamic_ncols=True,
                mininterval=0.5 if interactive else 5.0, delay=1.0, leave=True)  # fmt: skip


def write_above_bars(file: TextIO) -> Callable[[str], None]:
    """A line writer for ``file`` that keeps the progress bars of this process intact."""

    def write(line: str) -> None:
        tqdm.write(line, file=file)
        file.flush()

    return write


class AnalysisProgress:
    """A bar for one run file going through ``consumers`` (``with`` it around the replay).

    Parameters
    ----------
    consumers : sequence of Consumer
        The consumers the run is replayed into; the bar counts the frames they hand their
        analyses (:attr:`Consumer.n_frames_analysed`) and shows the analyses' ``progress()``.
    total : int or None
        Frames the run holds (the run file's streams), for the ETA.
    desc : str
        The bar's label (the run file's name).
    quiet : bool
        No bar.
    interval_s : float
        How often the counts are read.
    file : text stream
        Where the bar is drawn (default stderr).
    """

    def __init__(self, consumers: Sequence[Consumer], total: int | None, desc: str, *, quiet: bool = False,
                 interval_s: float = 0.5, file: TextIO | None = None) -> None:  # fmt: skip
        self.consumers = list(consumers)
        self.interval_s = interval_s
        self.bar = progress_bar(total, desc, quiet=quiet, file=file)
        self._counted = [consumer.n_frames_analysed for consumer in self.consumers]  # a consumer serves many runs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="analysis-progress", daemon=True)

    @property
    def frames_analysed(self) -> int:
        return sum(c.n_frames_analysed - before for c, before in zip(self.consumers, self._counted, strict=True))

    def _update(self) -> None:
        self.bar.update(self.frames_analysed - self.bar.n)
        in_progress = [p for consumer in self.consumers for p in consumer.progress()]
        words = [p.status for p in in_progress if p.status]
        if words:
            self.bar.set_postfix_str("; ".join(words), refresh=False)
        elif self.bar.total is not None and self.bar.n >= self.bar.total and not in_progress:
            self.bar.set_postfix_str("every frame in: reconstructing, mapping, writing", refresh=False)

    def _follow(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._update()

    def __enter__(self) -> AnalysisProgress:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:  # fmt: skip
        self._stop.set()
        self._thread.join()
        self._update()
        self.bar.set_postfix_str("done" if exc is None else "failed", refresh=False)
        self.bar.close()
