"""What a consumer's analyses hold, published live on the products channel (for dashboards).

:class:`LiveProducts` sits in a :class:`~streaming.analysis.consumer.Consumer`'s loop. At most
every ``period_s`` (0.5 s: 2 updates a second per product) it asks each run's analysis for its
products (an analysis with a ``products(requested)`` method returns a list of
:class:`~streaming.wire.products.Product`, ``requested(key)`` being what the receivers ask
for, e.g. ``xrdct.channel``), adds the potentiostat's curves and the streams' diagnostics,
and publishes them without blocking. Each product is the full current state, so a dashboard
that joins late is complete at once; a finished run's products are published once more when it
ends, and then stay on offer until the next run starts, so the last results stay on screen.
A product whose values did not change is sent again every :data:`HEARTBEAT_S` only.

What it costs the analysis: building the products (slices of the volumes, a few KB to MB)
every ``period_s``, never per frame (``benchmarks/benchmark_products.py`` measures it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streaming.wire.products import Product, ProductPublisher

from .readings import PotentiostatReadings

__all__ = ["LiveProducts", "diagnostics_product", "potentiostat_product"]

#: Most points of a curve published (a long run's readings are thinned to this many).
MAX_CURVE_POINTS = 4000
#: An unchanged product is sent again this often (s), for receivers that join late.
HEARTBEAT_S = 5.0


def potentiostat_product(readings: PotentiostatReadings, run_uid: str) -> Product:
    """The potentiostat's voltage (V), current (A) and capacity (mAh) against time (s since
    the epoch), with its latest mode and step."""
    series = readings.series()
    keep = _thinned(series["time"].size)
    arrays = {key: series[key][keep].astype(np.float64) for key in ("time", "voltage", "current", "capacity")}
    last = {key: _plain(series[key][-1]) if series[key].size else None for key in ("mode", "step")}
    return Product("potentiostat", {"mode": last["mode"], "step": last["step"], "n_readings": int(series["time"].size)},
                   arrays, run_uid=run_uid)  # fmt: skip


def diagnostics_product(consumer: Any, lag_s: float, rates: dict[str, float], newest_frame_s: float) -> Product:
    """Per stream, over the runs this consumer has seen: frames received, missing, late (sequence counts),
    invalid (rejected messages) and frames/s; the analysis' lag behind the newest frame (s),
    the frames waiting in its buffer, the frames handed to the analyses so far, and when the
    newest of them (which this round's products reflect) was received (s since the epoch)."""
    streams: dict[str, dict[str, float]] = {}
    sequences = consumer.frames.sequences
    for (_, stream), counts in list(sequences.counts.items()) if sequences is not None else []:
        entry = streams.setdefault(stream, {"received": 0, "missing": 0, "late": 0})
        entry["received"] += counts.received
        entry["missing"] += counts.missing
        entry["late"] += counts.late
    for stream, entry in streams.items():
        entry["invalid"] = consumer.frames.rejections.by_stream.get(stream, 0)
        entry["frames_per_s"] = rates.get(stream, 0.0)
    stats = consumer.receiver.stats
    invalid = consumer.frames.rejections.total + consumer.documents.rejections.total
    newest = newest_frame_s if np.isfinite(newest_frame_s) else None
    return Product("diagnostics", {"streams": streams, "lag_s": lag_s, "backlog_frames": stats.backlog,
                                   "buffer_mb": stats.bytes_held / 1e6, "invalid_total": invalid,
                                   "errors": consumer.errors, "newest_frame_received_s": newest,
                                   "frames_analysed": consumer.n_frames_analysed})  # fmt: skip


class LiveProducts:
    """Publish the products of a consumer's analyses (see the module docstring).

    Parameters
    ----------
    publisher : ProductPublisher
    period_s : float
        Least time between two publications of the same products.
    clock : callable
        Monotonic seconds.
    """

    def __init__(self, publisher: ProductPublisher, *, period_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.publisher = publisher
        self.period_s = period_s
        self._clock = clock
        self._last = -float("inf")
        self._last_counts: tuple[float, dict[str, int]] = (clock(), {})
        self._sent: dict[str, tuple[Any, float]] = {}  # product name -> (what it said, when)
        self.latest_frame_time_s = float("nan")  # receipt time of the newest frame handed on
        self.n_publications = 0
        self.seconds_spent = 0.0  # building and sending products, in the consumer's loop

    def frame_handled(self, received_at_s: float) -> None:
        """A frame received at ``received_at_s`` (s since the epoch) went to its analysis."""
        self.latest_frame_time_s = received_at_s

    def due(self) -> bool:
        return self._clock() - self._last >= self.period_s

    def publish(self, analyses: list[Any], consumer: Any, *, running: bool, final: bool = False) -> None:
        """Every product of ``analyses`` (the runs in progress of ``consumer``, or the last
        finished), now. The potentiostat's curves and ``consumer``'s diagnostics go only while a
        run is in progress (``running``) or as it ends (``final``): an idle consumer beside a
        busy one on the same channel (``operando consume all``) must not cover its live ones."""
        started = self._clock()
        self._last = started
        live = running or final
        for analysis in analyses:
            make = getattr(analysis, "products", None)
            if make is not None:
                for product in make(self.publisher.requested):
                    self._send(product)
            readings = getattr(analysis, "readings", None)
            if live and isinstance(readings, PotentiostatReadings) and len(readings):
                self._send(potentiostat_product(readings, analysis.start["uid"]))
        if live:
            # the age of the frame handed on last, while frames wait behind it (0 when caught up)
            lag_s = time.time() - self.latest_frame_time_s if running and consumer.receiver.stats.backlog else 0.0
            self._send(diagnostics_product(consumer, lag_s if np.isfinite(lag_s) else 0.0, self._rates(consumer),
                                           self.latest_frame_time_s))  # fmt: skip
        self.n_publications += 1
        self.seconds_spent += self._clock() - started

    def _send(self, product: Product) -> None:
        """Publish ``product`` if its values changed since it was last sent, or every
        :data:`HEARTBEAT_S` (for receivers that join): a finished scan's maps are not sent
        again twice a second."""
        signature = (product.run_uid, repr(product.values), tuple((k, a.shape) for k, a in product.arrays.items()))
        sent = self._sent.get(product.name)
        now = self._clock()
        if sent is not None and sent[0] == signature and now - sent[1] < HEARTBEAT_S:
            return
        self._sent[product.name] = (signature, now)
        self.publisher.publish(product)

    def _rates(self, consumer: Any) -> dict[str, float]:
        now = self._clock()
        sequences = consumer.frames.sequences
        counts: dict[str, int] = {}
        for (_, stream), stream_counts in list(sequences.counts.items()) if sequences is not None else []:
            counts[stream] = counts.get(stream, 0) + stream_counts.received
        since, before = self._last_counts
        self._last_counts = (now, counts)
        elapsed = max(now - since, 1e-9)
        return {stream: (n - before.get(stream, 0)) / elapsed for stream, n in counts.items()}


def _thinned(n: int) -> slice:
    return slice(None, None, max(1, -(-n // MAX_CURVE_POINTS)))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode(errors="replace")
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not np.isfinite(value) else value
