"""What a consumer keeps of each run: the :class:`Analysis` it drives, its :class:`RunState`,
and the :class:`RunProgress` it reports (:mod:`.consumer`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from streaming.wire.protocol import Frame

from .delivery import RecordedFrames, RunDelivery, SourceFrames

__all__ = ["Analysis", "RunProgress", "RunState"]


class Analysis(Protocol):
    """What a consumer runs for one run (see the module docstring)."""

    streams: tuple[str, ...]
    """Frame streams it wants (the detectors' names)."""

    def document(self, name: str, doc: dict[str, Any]) -> None:
        """Every document of the run after its start (events, stream datums, ...)."""

    def frame(self, frame: Frame) -> None:
        """One frame of the run, of one of :attr:`streams`, in arrival order (a batch of frames
        only to an analysis whose ``takes_batches`` is true; others get its frames one by one)."""

    def finish(self, stop: dict[str, Any] | None) -> None:
        """The run is over: write the results (``stop`` is None when the consumer closes first).

        An analysis with a ``delivery`` attribute gets the run's :class:`RunDelivery` there
        just before, to write and report with its results. One with a ``progress()`` method
        says where it is (``"scan 2: 37/48 lines"``) for progress bars (:meth:`Consumer.progress`)."""


@dataclass(frozen=True)
class RunProgress:
    """Where a run in progress stands in a consumer (read from another thread)."""

    uid: str
    frames_analysed: int
    """Frames handed to the analysis so far (of the streams it takes)."""
    frames_announced: int
    """Frames of those streams the StreamDatum documents announced so far."""
    status: str
    """The analysis' own words (its ``progress()``), or ``""``."""


class RunState:
    """What a consumer keeps of one run in progress."""

    def __init__(self, analysis: Analysis, start: dict[str, Any], recorded: RecordedFrames) -> None:
        self.analysis = analysis
        self.start = start
        self.stop: dict[str, Any] | None = None
        self.stopped_at: float | None = None
        self.last_frame_at = 0.0
        self.descriptors: set[str] = set()
        self.resources: dict[str, str] = {}  # stream resource uid -> frame stream
        self.expected: Counter[str] = Counter()  # frames announced per stream
        self.received: Counter[str] = Counter()
        self.n_analysed = 0  # frames handed to the analysis
        self.n_documents = 1  # the start
        self.frames_by_stream: Counter[str] = Counter()  # as received, for the run's receipt
        self.next_seq: Counter[str] = Counter()  # per stream, the sequence number expected next
        self.refilled: dict[str, set[int]] = {}  # per stream, sequence numbers fetched from the file
        self.deferred: dict[str, list[int]] = {}  # missed before the run's file was named (StreamResource)
        self.sources_seen = SourceFrames()  # which source frames came as a worker's pattern
        self.recorded = recorded
        self.delivery = RunDelivery()
        self.from_file: set[str] = set()  # uids of documents read from the run file (caught up on)

    @property
    def all_frames_in(self) -> bool:
        return all(self.received[stream] >= n for stream, n in self.expected.items())
