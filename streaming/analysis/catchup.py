"""Runs already under way when an analysis starts (a late start, a restart after a crash).

A consumer that connects in the middle of a run never receives its start document, its
descriptors or its first frames. The recorder has them all in the run's SWMR file
(:mod:`streaming.store.runfile`). :class:`LateRuns` notices such a run (frames or documents
that no start claimed for ``grace_s``: a start merely overtaken by its first frames, which
travel on another socket, arrives well within that) and reads its documents so far from the
file; the consumer handles them as if they had come live, then the documents it held back,
then the live stream. The handover is exact:

- documents by uid: one read from the file and then received live is handled once;
- frames by sequence number: with back-fill on (the default), the consumer (:mod:`.delivery`)
  fetches from the file every frame below the first one that came live, and skips a live frame
  it already fetched (a builder of workers' patterns, which carry no sequence of their own,
  fetches the source frames no pattern came for at the scan's end).

The file is read once it holds the message that showed the run (that frame, or that
document), so nothing sent before the consumer connected is missing from it; documents that
come live meanwhile are held back, and only while a late run waits.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

from streaming.errors import RunFileError
from streaming.store.filenames import analysis_of, run_file_glob
from streaming.store.runreader import RunFileReader

__all__ = ["LateRuns", "recorded_documents"]

logger = logging.getLogger(__name__)

_RETRY_S = 0.2


def find_run_file(run_directory: Path, run_uid: str) -> Path | None:
    """The recorder's file of ``run_uid`` in ``run_directory`` (by its name, then its uid): the
    newest, when the run was recorded again (a replay: ``<name>.1.h5``)."""
    candidates = [path for path in Path(run_directory).glob(run_file_glob(run_uid)) if analysis_of(path) is None]
    for path in sorted(candidates, key=lambda path: path.stat().st_mtime, reverse=True):
        try:
            with RunFileReader(path) as reader:
                if reader.run_uid == run_uid:
                    return path
        except (OSError, RunFileError, KeyError):
            continue  # being created, or not a run file
    return None


def recorded_documents(
    run_directory: Path, run_uid: str, *, frame: tuple[str, int] | None = None, document_uid: str | None = None,
    timeout_s: float = 10.0,
) -> tuple[Path, list[tuple[str, dict[str, Any]]]] | None:  # fmt: skip
    """The documents of ``run_uid`` its file holds, in order, once the file also holds ``frame``
    (stream, sequence number) or the document ``document_uid`` (waits up to ``timeout_s`` for
    the recorder to flush them); None if there is no such file."""
    deadline = time.monotonic() + timeout_s
    path, documents = None, []
    while True:
        path = path or find_run_file(run_directory, run_uid)
        if path is not None:
            try:
                with RunFileReader(path) as reader:
                    if frame is not None:  # cheap: one frame looked for; the documents read once it is there
                        stream, seq = frame
                        holds = stream in reader.streams and any(True for _ in reader.frames_by_sequence(stream, [seq]))
                    if frame is None or holds or time.monotonic() > deadline:
                        documents = [(name, doc) for name, doc, *_ in reader.documents()]
                    if frame is None:
                        holds = document_uid is None or any(doc.get("uid") == document_uid for _, doc in documents)
                if holds and documents:
                    return path, documents
            except (OSError, RunFileError, KeyError):
                pass  # the writer is restructuring it: look again
        if time.monotonic() > deadline:
            if documents:
                logger.warning("run %s: %s does not hold the live message yet; going on with its %d documents",
                               run_uid[:8], path, len(documents))  # fmt: skip
                return path, documents
            return None
        time.sleep(_RETRY_S)


class LateRuns:
    """Runs whose messages came without a start, and the documents held back for them.

    Parameters
    ----------
    run_directory : Path or None
        The recorder's folder; None: nothing can be caught up (said once per run).
    grace_s : float
        How long a run's messages may come without its start before it counts as late.
    timeout_s : float
        How long to wait for the recorder to flush what showed the run.
    max_documents : int
        Documents of unknown runs held back (events carry no run uid: whose they are is known
        only once the run's descriptors are).
    """

    def __init__(self, run_directory: Path | None, *, grace_s: float = 1.0, timeout_s: float = 10.0,
                 max_documents: int = 10_000) -> None:  # fmt: skip
        self.run_directory = run_directory
        self.grace_s = grace_s
        self.timeout_s = timeout_s
        self.held: deque[tuple[str, dict[str, Any]]] = deque(maxlen=max_documents)
        self._first_seen: dict[str, tuple[float, tuple[str, int] | None, str | None]] = {}
        self._given_up: set[str] = set()
        self.looked_for = 0  # late runs looked for in the recorder's folder
        self.caught_up = 0  # and adopted

    def expect(self, run_uid: str) -> None:
        """Catch up on ``run_uid`` after the grace period even if nothing of it comes live (a
        restarted analysis told which run was under way, or had just ended)."""
        if run_uid not in self._given_up:
            self._first_seen.setdefault(run_uid, (time.monotonic(), None, None))

    def frame_without_run(self, run_uid: str, stream: str, seq: int) -> None:
        since, frame, document_uid = self._first_seen.get(run_uid, (time.monotonic(), None, None))
        if frame is None and document_uid is None and run_uid not in self._given_up:  # the first message of it
            # a worker's pattern ("pilatus.integrated") is not in the file: the documents will do
            self._first_seen[run_uid] = (since, None if "." in stream else (stream, seq), None)

    def document_without_run(self, name: str, doc: dict[str, Any]) -> None:
        """A document no run of the consumer's claims: a late run's (held while one waits), or
        one of a run the consumer ignores or has finished (dropped)."""
        run_uid = doc.get("run_start")
        if isinstance(run_uid, str) and run_uid not in self._given_up:
            since, frame, document_uid = self._first_seen.get(run_uid, (time.monotonic(), None, None))
            if frame is None and document_uid is None:
                self._first_seen[run_uid] = (since, None, doc.get("uid"))
        if self._first_seen:
            self.held.append((name, doc))

    def started(self, run_uid: str) -> None:
        """Its start came (live, or from its file)."""
        self._first_seen.pop(run_uid, None)

    def due(self) -> list[tuple[str, Path, list[tuple[str, dict[str, Any]]]]]:
        """The late runs found in the recorder's files: ``(run uid, its file, documents so far)``."""
        now, found = time.monotonic(), []
        for run_uid, (since, frame, document_uid) in list(self._first_seen.items()):
            if now - since < self.grace_s:
                continue
            del self._first_seen[run_uid]
            self._given_up.add(run_uid)  # one try per run
            self.looked_for += 1
            if self.run_directory is None:
                logger.warning("run %s began before this analysis; set live.run_dir to the recorder's folder to "
                               "catch up on it from the run file", run_uid[:8])  # fmt: skip
                continue
            recorded = recorded_documents(self.run_directory, run_uid, frame=frame, document_uid=document_uid,
                                          timeout_s=self.timeout_s)  # fmt: skip
            if recorded is None:
                logger.warning("run %s began before this analysis and %s has no file of it: not analysed", run_uid[:8],
                               self.run_directory)  # fmt: skip
                continue
            found.append((run_uid, *recorded))
        if not self._first_seen and not found:
            self.held.clear()  # nobody waits for them
        return found

    def adopted(self, run_uid: str, path: Path, n_documents: int) -> None:
        """The consumer took a late run on: say so."""
        self.caught_up += 1
        logger.warning("run %s began before this analysis: catching up from %s (%d documents), then live",
                       run_uid[:8], path, n_documents)  # fmt: skip

    def take_held(self) -> list[tuple[str, dict[str, Any]]]:
        """The documents held back, in arrival order (the consumer hands on those it now knows)."""
        held = list(self.held)
        self.held.clear()
        return held
