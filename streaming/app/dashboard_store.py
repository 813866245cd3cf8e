"""The dashboard's side of the products channel: the latest state of every product.

:class:`ProductStore` receives products in a thread of its own (a
:class:`~streaming.wire.products.ProductSubscriber`, reconnecting by itself when an analysis
process comes and goes) and keeps, per name, the latest product and a version that rises with
each, so every browser session shows the same state and redraws only what changed. It keeps
the maps of the last finished scans too (the user picks the scan), and forwards the 2θ channels
the sessions show to the analyses as requests (counted: a channel is asked for while one
session shows it).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict

from streaming.wire.products import DEFAULT_PRODUCTS_ADDRESS, Product, ProductSubscriber

__all__ = ["ProductStore"]

#: Finished scans whose maps the dashboard keeps (a long series' oldest are forgotten): a day
#: of hourly scans; at the paper's size (549 x 549 voxels, 12 maps) ~14 MB a scan.
MAX_SCANS_KEPT = 24


class ProductStore:
    """The latest products from ``address`` (see the module docstring); :meth:`start` it, and
    :meth:`stop` it to close its socket."""

    def __init__(self, address: str = DEFAULT_PRODUCTS_ADDRESS) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._latest: dict[str, Product] = {}
        self._versions: Counter[str] = Counter()
        self._maps: OrderedDict[tuple[str, int], Product] = OrderedDict()  # (run uid, scan) -> xrdct.maps
        self._channels: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="products", daemon=True)
        self.n_received = 0
        self.n_rejected = 0

    def start(self) -> ProductStore:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    # -- what the sessions read -----------------------------------------------------------------

    def get(self, name: str) -> tuple[int, Product | None]:
        """(version, latest product) of ``name``; (0, None) before the first."""
        with self._lock:
            return self._versions[name], self._latest.get(name)

    def scans_with_maps(self) -> list[tuple[str, int]]:
        """(run uid, scan index) of the finished scans whose maps are kept, oldest first."""
        with self._lock:
            return list(self._maps)

    def maps_of(self, key: tuple[str, int]) -> Product | None:
        with self._lock:
            return self._maps.get(key)

    def request_channel(self, channel: int) -> None:
        """A session shows 2θ ``channel``: ask the analyses for it."""
        with self._lock:
            self._channels[channel] += 1

    def release_channel(self, channel: int) -> None:
        with self._lock:
            self._channels[channel] -= 1

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        subscriber = ProductSubscriber(self.address)
        asked: set[int] = set()
        try:
            while not self._stop.is_set():
                with self._lock:
                    wanted = {channel for channel, n in self._channels.items() if n > 0}
                for channel in wanted - asked:
                    subscriber.request("xrdct.channel", str(channel))
                for channel in asked - wanted:
                    subscriber.withdraw("xrdct.channel", str(channel))
                asked = wanted
                product = subscriber.recv(0.1)
                self.n_rejected = subscriber.rejected.total
                if product is not None:
                    self._keep(product)
        finally:
            subscriber.close()

    def _forget_scans_not_shown(self) -> None:
        patterns = self._latest.get("xrdct.patterns")
        shown = {f"xrdct.scan@{channel}" for channel, n in self._channels.items() if n > 0}
        if patterns is not None:
            shown.add(f"xrdct.scan@{patterns.values.get('default_channel')}")
        for name in [name for name in self._latest if name.startswith("xrdct.scan@") and name not in shown]:
            del self._latest[name]

    def _keep(self, product: Product) -> None:
        with self._lock:
            self.n_received += 1
            self._latest[product.name] = product
            self._versions[product.name] += 1
            if product.name.startswith("xrdct.scan@"):  # keep the channels shown, not all ever asked for
                self._forget_scans_not_shown()
            if product.name == "xrdct.maps":
                key = (product.run_uid, int(product.values.get("scan", 0)))
                self._maps[key] = product
                self._maps.move_to_end(key)
                while len(self._maps) > MAX_SCANS_KEPT:
                    self._maps.popitem(last=False)
