"""Where streaming detectors send their frames: the frame channel and the open run.

A :class:`FrameSink` is shared by every detector of a beamline. Subscribed to the RunEngine
(``RE.subscribe(sink)``), it follows the open run, so frames carry the run's uid, and it knows
where the recorder stores each stream, so a detector's StreamResource document points at the
right file and dataset (``/entry/instrument/<stream>/data`` of the recorder's run file in
``run_directory``). Detectors never put arrays inside Events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streaming.errors import DeviceError
from streaming.store.filenames import run_file_name
from streaming.wire.protocol import FrameHeader
from streaming.wire.transport import FramePublisher

__all__ = ["FrameSink"]


class FrameSink:
    """The frame channel as detectors see it.

    Parameters
    ----------
    publisher : FramePublisher, optional
        The frame channel; without one, frames are counted and dropped (a dry run).
    run_directory : path, optional
        The recorder's output folder (default: the current one), for StreamResource URIs.
    """

    def __init__(self, publisher: FramePublisher | None = None, *, run_directory: Path | str | None = None) -> None:
        self.publisher = publisher
        self.run_directory = Path(run_directory if run_directory is not None else Path.cwd()).absolute()
        self._start: dict[str, Any] | None = None
        self.published: Counter[str] = Counter()

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """RunEngine callback: follow the open run."""
        if name == "start":
            self._start = doc
        elif name == "stop" and self._start is not None and doc.get("run_start") == self._start["uid"]:
            self._start = None

    @property
    def run_uid(self) -> str:
        """The open run's uid; :class:`DeviceError` when no run is open."""
        if self._start is None:
            raise DeviceError("no open run: subscribe the frame sink to the RunEngine (RE.subscribe(sink))")
        return self._start["uid"]

    def run_file_uri(self) -> str:
        """URI of the recorder's HDF5 file of the open run."""
        path = self.run_directory / run_file_name(self.run_uid, self._start)
        return path.as_uri()

    @staticmethod
    def dataset(stream: str) -> str:
        """Where the recorder writes a stream's frames in the run file."""
        return f"/entry/instrument/{stream}/data"

    def publish(
        self,
        stream: str,
        data: np.ndarray,
        *,
        positions: dict[str, float],
        indices: dict[str, int],
        timestamp: float | None = None,
        timestamps: Sequence[float] | None = None,
        counter: str | None = None,
        frame_positions: dict[str, Sequence[float]] | None = None,
    ) -> FrameHeader | None:
        """Send one frame of the open run, or a batch of frames along ``data``'s first axis
        with ``timestamps``, the index ``counter`` counting them and the ``frame_positions``
        that change from frame to frame (numbered in its stream); None in a dry run."""
        run_uid = self.run_uid
        self.published[stream] += 1 if timestamps is None else len(timestamps)
        if self.publisher is None:
            return None
        return self.publisher.publish(stream, data, run_uid=run_uid, positions=positions, indices=indices,
                                      timestamp=timestamp, timestamps=timestamps, counter=counter,
                                      frame_positions=frame_positions)  # fmt: skip
