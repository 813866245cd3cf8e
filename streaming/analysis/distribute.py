"""Fan a detector's frames out to integration workers: how the live XRD-CT integration scales
past one process, on this host or others.

::

    detector ──PUB──► recorder, other analyses
                 └──► FrameDistributor ──PUSH──► N × integration worker ──PUSH──► builder (PULL)
                      (operando distribute)       (operando integrate)          (operando consume
                                                                                 xrdct --patterns)

The distributor subscribes to the frame channel like any receiver (a malformed message is
counted and skipped, sequence gaps are counted) and forwards each frame of the chosen streams,
without a copy, to one worker: PUSH hands frames round-robin to the connected workers and
blocks when every worker is ``hwm`` frames behind, so the slowest part sets the pace instead
of frames being lost between the distributor and the workers. Start the workers before the
run: with no worker connected, frames wait in the distributor and its subscription fills.

Each worker (:class:`~streaming.analysis.xrdct.IntegrationWorker`) takes the documents from
the document channel, integrates its share and pushes the 1D patterns, with the frames'
indices and time stamps, to the builder, which places them whatever their order.
"""

from __future__ import annotations

import logging
import threading

from streaming.wire.transport import FramePublisher, FrameSubscriber

__all__ = ["DEFAULT_PATTERN_ADDRESS", "DEFAULT_WORKER_ADDRESS", "FrameDistributor"]

logger = logging.getLogger(__name__)

#: where a distributor offers frames to workers, and where a builder takes their patterns
DEFAULT_WORKER_ADDRESS = "tcp://127.0.0.1:5581"
DEFAULT_PATTERN_ADDRESS = "tcp://127.0.0.1:5582"


class FrameDistributor:
    """Forward frames from the frame channel (SUB) to workers (PUSH, bound).

    Parameters
    ----------
    frame_address : str
        The frame channel's publisher.
    worker_address : str
        Where workers connect (bound here); port 0 picks a free one (see ``address``).
    streams : tuple of str or None
        Streams forwarded (None: all), e.g. ``("pilatus",)``.
    hwm : int or None
        Frames queued per worker before sending blocks (None: the transport's default).
    """

    def __init__(
        self,
        frame_address: str,
        worker_address: str = DEFAULT_WORKER_ADDRESS,
        *,
        streams: tuple[str, ...] | None = None,
        hwm: int | None = None,
    ) -> None:
        options = {} if hwm is None else {"hwm": hwm}
        self.workers = FramePublisher(worker_address, pattern="push", **options)
        try:
            self.frames = FrameSubscriber(frame_address, pattern="sub", streams=streams, **options)
        except Exception:
            self.workers.close(linger_s=0)
            raise
        self.n_forwarded = 0
        self.n_dropped_at_stop = 0

    @property
    def address(self) -> str:
        """Where workers connect."""
        return self.workers.address

    def wait_for_workers(self, n: int = 1, timeout_s: float = 10.0) -> None:
        """Block until ``n`` workers are connected (see :meth:`FramePublisher.wait_for_subscribers`)."""
        self.workers.wait_for_subscribers(n, timeout_s)

    def poll(self, timeout_s: float = 0.05, stop: threading.Event | None = None) -> int:
        """Forward what has arrived (waiting up to ``timeout_s`` for the first); returns how
        many. While every worker is behind it waits, checking ``stop``: a frame in hand when
        ``stop`` is set is counted in ``n_dropped_at_stop``."""
        n = 0
        frame = self.frames.recv(timeout_s=timeout_s)
        while frame is not None:
            if not self.workers.wait_writable(stop):
                self.n_dropped_at_stop += 1
                self.n_forwarded += n
                return n
            self.workers.send(frame.header, frame.data)
            n += 1
            if n >= 10_000 or (stop is not None and stop.is_set()):
                break  # bounded; no frame is received past the bound
            frame = self.frames.recv(timeout_s=0)
        self.n_forwarded += n
        return n

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set."""
        while not stop.is_set():
            self.poll(stop=stop)

    def close(self) -> None:
        """Close both sockets; frames still queued for workers get the transport's linger."""
        missing = sum(c.missing for c in self.frames.sequences.counts.values()) if self.frames.sequences else 0
        logger.info("distributor forwarded %d frames (%d missing by sequence number, %d rejected)",
                    self.n_forwarded, missing, self.frames.rejections.total)  # fmt: skip
        self.frames.close()
        self.workers.close()

    def __enter__(self) -> FrameDistributor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
