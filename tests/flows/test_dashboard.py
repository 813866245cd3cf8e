"""The live dashboard as a person sees it: a tiny operando demo with its dashboard, read in
headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium).

``make test`` installs Chromium when it is missing and it can; in CI (``CI=true``) a missing
browser fails these tests, elsewhere it skips them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.flows.conftest import OPERANDO, ROOT

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

#: The data of a Bokeh model (by name) of the page, summed up in the browser.
_SOURCE_STATE = """
const doc = Bokeh.documents[0];
const source = doc && doc.get_model_by_name(arguments[0]);
if (!source) return null;
const data = source.data;
const column = data[arguments[1]];
if (!column) return null;
const values = arguments[1] === "image" ? (column.length ? column[0] : []) : column;
let sum = 0, n = 0;
for (const v of values) { n += 1; if (Number.isFinite(v)) sum += v * ((n % 7) + 1); }
return [n, sum];
"""
_TEXT = "const m = Bokeh.documents[0] && Bokeh.documents[0].get_model_by_name(arguments[0]); return m ? m.text : null;"
#: Where on the page (viewport px) a fraction of a plot's frame is, after scrolling it in.
_FRAME_POINT = """
const plot = Bokeh.documents[0].get_model_by_name(arguments[0]);
const view = Bokeh.index.find_one(plot);
view.el.scrollIntoView({block: "center"});
const rect = view.el.getBoundingClientRect(), frame = view.frame.bbox;
return [rect.left + frame.left + arguments[1] * frame.width, rect.top + frame.top + arguments[2] * frame.height];
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def browsers() -> Iterator[list]:
    """Headless Chromium windows (``open()`` another), each logging the console."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = f"no Chromium ({CHROMIUM}, {CHROMEDRIVER}): `make test` installs Debian's chromium, chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opened: list = []

    def open_one():
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1700,1400"):  # fmt: skip
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        opened.append(driver)
        return driver

    yield open_one
    for driver in opened:
        driver.quit()


def _wait_for(what: str, probe, timeout_s: float = 120.0, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what} within {timeout_s} s")


def _state(driver, name: str, column: str):
    return driver.execute_script(_SOURCE_STATE, name, column)


def _console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.timeout(900)
def test_the_dashboard_shows_a_tiny_operando_demo_while_it_runs(browsers, tmp_path):
    """The page loads clean; the reconstruction changes within one scan; the potentiostat curve
    grows; a click on the patterns picks the 2θ shown; a second browser opened mid-run shows
    what the first shows."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    products = f"tcp://127.0.0.1:{_free_port()}"
    demo = subprocess.Popen([*OPERANDO, "demo", "xrdct", "--preset", "tiny", "--set", "xrdct.n_scans=3", "--set",
                             "xrdct.exposure_s=0.03", "--set", f"live.products={products!r}", "--dashboard-port", "0",
                             "--keep-dashboard", "--out", str(tmp_path), "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        url = _wait_for("the dashboard's address", lambda: next(
            (found for line in printed if (found := re.search(r"live dashboard: (http://\S+)", line))), None
        ) or demo.poll() is not None, 120)  # fmt: skip
        assert url is not True, "".join(printed) + demo.stderr.read()[-3000:]
        one = browsers()
        one.get(url.group(1))
        _wait_for("the page's Bokeh document", lambda: one.execute_script("return Bokeh.documents.length"), 60)

        # the reconstruction of one scan, at two moments: it grows line by line
        def scan_state():
            status = one.execute_script(_TEXT, "status") or ""
            found = re.search(r"scan (\d+): (\d+)/(\d+) lines", status)
            image = _state(one, "reconstruction_source", "image")
            if found and image and image[0] and "finished" not in status:
                return int(found[1]), int(found[2]), image
            return None

        scan, lines, image = _wait_for("a reconstruction growing", scan_state)
        later = _wait_for("more lines of the same scan",
                          lambda: (s := scan_state()) and s[0] == scan and s[1] > lines and s)  # fmt: skip
        assert later[2] != image, "the reconstruction did not change while its scan went on"

        # the potentiostat curve gains points
        def n_readings() -> int:
            return (_state(one, "potentiostat_source", "voltage") or [0])[0]

        points = _wait_for("potentiostat points", n_readings)
        _wait_for("more potentiostat points", lambda: n_readings() > points)

        # a click on the patterns picks the 2θ of the sinogram and reconstruction shown
        before = one.execute_script(_TEXT, "selected_two_theta")
        x, y = one.execute_script(_FRAME_POINT, "pattern_plot", 0.2, 0.5)
        action = ActionBuilder(one)
        action.pointer_action.move_to_location(int(x), int(y)).click()
        action.perform()
        chosen = _wait_for("a chosen 2θ", lambda: (t := one.execute_script(_TEXT, "selected_two_theta")) != before
                           and "chosen" in t and t)  # fmt: skip
        channel = int(re.search(r"channel (\d+)", chosen)[1])
        title = "return Bokeh.documents[0].get_model_by_name(arguments[0]).title.text"
        for plot in ("sinogram_plot", "reconstruction_plot"):  # drawn from the analysis' product at that 2θ
            shown = f"(channel {channel})"
            _wait_for(f"the {plot} at the chosen 2θ", lambda p=plot, s=shown: s in one.execute_script(title, p))

        # a second browser, opened mid-run, shows the same state once the run is over
        two = browsers()
        two.get(url.group(1))
        _wait_for("the second page", lambda: two.execute_script("return Bokeh.documents.length"), 60)
        _wait_for("the end of the run", lambda: any("the dashboard shows the results" in line for line in printed)
                  or demo.poll() is not None, 600)  # fmt: skip
        assert demo.poll() is None, "".join(printed) + demo.stderr.read()[-3000:]
        time.sleep(2)  # the last products, then a redraw of each page
        for name, column in (("potentiostat_source", "voltage"), ("series_source", "lattice"),
                             ("lattice_source", "image")):  # fmt: skip
            assert _state(one, name, column) == _state(two, name, column), name
            assert (_state(two, name, column) or [0])[0] > 0, name
        assert "scan 2: 48/48 lines" in one.execute_script(_TEXT, "status")  # the last scan, finished
        for driver in (one, two):
            assert not _console_errors(driver)
        demo.send_signal(signal.SIGINT)  # Ctrl-C, as the demo says
        _, err = demo.communicate(timeout=60)
        assert demo.returncode == 0, err[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
