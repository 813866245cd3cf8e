"""``operando dashboard``: the live analyses in a web page (a Bokeh server).

The page shows what the products channel carries (:mod:`streaming.analysis.products`), updated
in place over Bokeh's websocket, for any number of browsers at once: they all read one
:class:`~.dashboard_store.ProductStore`, so each shows the same state.

- XRD-CT: the patterns (latest and mean, 2θ in degrees; click one, or move the slider, to pick
  the 2θ shown), the scan's sinogram at that 2θ (translation mm x angle deg) and its
  reconstruction growing line by line (mm, with a scale bar), lines done and the centre; a
  finished scan's phase and lattice maps (pick the scan and the phase); the series' mean
  lattice against capacity.
- XCS-CT: the latest spectrum, the last EMF map and its σ, the cathode's EMF against
  capacity, the latest XCT slice with its segmentation outlined.
- The potentiostat: voltage, current and capacity against time; its mode and step.
- Diagnostics per stream: frames received, missing, late, invalid, frames/s; the lag.

Every image has a colour bar; the colour range is a percentile range the user sets; "Pause"
freezes the page (the store goes on receiving). The page lives in :mod:`.dashboard_page`.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from streaming.errors import ConfigError
from streaming.wire.products import DEFAULT_PRODUCTS_ADDRESS
from streaming.wire.security import current_security

from .dashboard_store import ProductStore

__all__ = ["DashboardProcess", "cmd_dashboard", "dashboard_url", "serve_dashboard"]

logger = logging.getLogger(__name__)


def dashboard_url(bind: str, port: int) -> str:
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
    return f"http://{host}:{port}/"


def serve_dashboard(products: str = DEFAULT_PRODUCTS_ADDRESS, *, port: int = 8080, bind: str = "127.0.0.1",
                    on_ready: Callable[[str], None] | None = None, stop_with_parent: bool = False) -> None:  # fmt: skip
    """Serve the dashboard of the products published at ``products`` on ``bind:port`` (port 0:
    a free one) until SIGINT or SIGTERM (or, ``stop_with_parent``, until the process that
    started this one ends); ``on_ready(url)`` once it listens."""
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server
    from tornado.ioloop import PeriodicCallback

    from .dashboard_page import DashboardSession

    if port == 0:
        port = _free_port(bind)
    store = ProductStore(products).start()

    def make_document(document) -> None:
        session = DashboardSession(store, document)
        document.on_session_destroyed(lambda _: session.close())

    hosts = {"127.0.0.1", "localhost", bind}
    origins = ["*"] if bind in ("0.0.0.0", "") else [f"{host}:{port}" for host in sorted(hosts)]
    try:
        server = Server({"/": Application(FunctionHandler(make_document))}, address=bind, port=port,
                        allow_websocket_origin=origins, num_procs=1)  # fmt: skip
    except OSError as exc:
        store.stop()
        raise ConfigError(f"dashboard: cannot listen on {bind}:{port} ({exc})") from exc
    loop = server.io_loop
    signal.signal(signal.SIGTERM, lambda *_: loop.add_callback_from_signal(loop.stop))
    if stop_with_parent:  # a demo killed outright cannot stop its dashboard: it goes by itself
        parent = os.getppid()
        PeriodicCallback(lambda: os.getppid() != parent and loop.stop(), 1000).start()
    server.start()
    url = dashboard_url(bind, port)
    if on_ready is not None:
        on_ready(url)
    try:
        loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        store.stop()


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``operando dashboard``: serve until Ctrl-C/SIGTERM."""

    def ready(url: str) -> None:
        print(f"dashboard at {url} (products from {args.products}); Ctrl-C to stop", flush=True)

    serve_dashboard(args.products, port=args.port, bind=args.bind, on_ready=ready, stop_with_parent=args.with_parent)
    return 0


class DashboardProcess:
    """``operando dashboard`` in a process of its own (the demo's), stopped by :meth:`stop`.

    Raises
    ------
    ConfigError
        It did not start listening within ``timeout_s`` (its port taken, ...): its error.
    """

    def __init__(self, products: str, log_path: Path, *, port: int = 8080, bind: str = "127.0.0.1",
                 timeout_s: float = 60.0) -> None:  # fmt: skip
        command = [sys.executable, "-m", "streaming.app.cli", "dashboard", "--products", products, "--port", str(port),
                   "--bind", bind, "--with-parent", *current_security().options()]  # fmt: skip
        self.log_path = log_path
        with open(log_path, "w") as log:  # its warnings and errors, read by nobody while all goes well
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        words = self._first_line(timeout_s).split()
        self.url = words[2] if len(words) > 2 and words[2].startswith("http") else ""
        if not self.url:
            self.stop()
            error = log_path.read_text().strip().splitlines()
            raise ConfigError(f"the dashboard did not start: {error[-1] if error else 'no reason given'} "
                              f"(log: {log_path})")  # fmt: skip

    def _first_line(self, timeout_s: float) -> str:
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.process.poll() is None:
                if selector.select(0.2):
                    return self.process.stdout.readline()
        return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _free_port(bind: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((bind or "127.0.0.1", 0))
        return probe.getsockname()[1]
