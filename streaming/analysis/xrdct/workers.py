"""Scaled-out integration: workers that integrate a share of the frames for one builder.

- :class:`IntegrationWorker`: ``make_analysis`` for worker consumers that take a share of the
  frames (``frame_pattern="pull"``) and republish each as its 1D pattern, same run, same
  indices and positions (and the frame's sequence number as index ``source_seq``, so the
  builder can fetch the frames no pattern came from), on a PUSH publisher that fans in to
  the builder.

Scaling by PUSH/PULL::

    detector ──PUB──► recorder
             └─PUSH─► worker 1..N (Consumer pull, IntegrationWorker) ──PUSH──┐
                                                                             ▼ PULL (bound)
                                          builder Consumer(frame_bind=True, XrdctAnalysis)

The builder's consumer binds its PULL socket and the workers connect to it, so any number
of workers on any host feed one builder; patterns are placed by index, so their order does
not matter. A pattern is ``n_radial`` floats instead of a frame: the builder's own work is
then placement and back-projection only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from streaming.analysis.consumer import SOURCE_SEQ
from streaming.processing.integration import AzimuthalReducer
from streaming.wire.protocol import Frame
from streaming.wire.transport import FramePublisher

from .config import INTEGRATED_SUFFIX, ZIGZAG_PLANS, XrdctAnalysisConfig

__all__ = ["IntegrationWorker"]

logger = logging.getLogger(__name__)


class IntegrationWorker:
    """``make_analysis`` of a worker: integrate each frame it gets, republish the pattern.

    Parameters
    ----------
    config : XrdctAnalysisConfig
        The builder's config (the integration and geometry must be the same).
    publisher : FramePublisher
        Where patterns go (a PUSH publisher connected to the builder's bound PULL, usually);
        owned by the caller, which closes it.
    stop : event or None
        While the builder takes no pattern, a send waits, looking at this flag (a
        ``threading`` or ``multiprocessing`` event); once set, the pattern in hand is dropped
        and counted (``n_dropped_at_stop``) rather than waited on for ever.
    """

    def __init__(self, config: XrdctAnalysisConfig, publisher: FramePublisher, stop: Any = None) -> None:
        self.config = config
        self.publisher = publisher
        self.stop = stop
        self.n_frames = 0
        self.n_dropped_at_stop = 0

    def __call__(self, start: dict[str, Any]) -> _WorkerRun | None:
        if start.get("plan_name") not in ZIGZAG_PLANS or self.config.detector not in start.get("detectors", ()):
            return None
        return _WorkerRun(self, self.config.reducer(start), start)


class _WorkerRun:
    def __init__(self, worker: IntegrationWorker, reducer: AzimuthalReducer, start: dict[str, Any]) -> None:
        self.start = start
        self.worker = worker
        self.reducer = reducer
        self.streams = (worker.config.detector,)
        self.n_frames = 0

    def document(self, name: str, doc: dict[str, Any]) -> None:
        pass

    def frame(self, frame: Frame) -> None:
        header = frame.header
        pattern = self.reducer.integrate(frame.data).astype(np.float32)
        worker = self.worker
        if not worker.publisher.wait_writable(worker.stop):
            worker.n_dropped_at_stop += 1
            return
        self.worker.publisher.publish(
            header.stream + INTEGRATED_SUFFIX, pattern, run_uid=header.run_uid, positions=header.positions,
            indices={**header.indices, SOURCE_SEQ: header.seq}, timestamp=header.timestamp,
        )  # fmt: skip
        self.n_frames += 1
        self.worker.n_frames += 1

    def finish(self, stop: dict[str, Any] | None) -> None:
        self.reducer = None  # its tables (~50 MB for a Pilatus2M): a worker serves run after run
        logger.info("worker integrated %d frames of this run", self.n_frames)
