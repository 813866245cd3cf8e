"""``operando demo --epics``: the main job through the simulated end stations' IOCs (caproto
and p4p, processes of their own), frames over PV Access and the bridges, recorded and analysed
live; with the same seed its results are the direct simulation's within noise."""

from __future__ import annotations

import re
import subprocess

import pytest

from streaming.store.runreader import RunFileReader
from tests.flows.conftest import OPERANDO, ROOT

XRDCT = ["xrdct", "--preset", "tiny", "--set", "xrdct.n_scans=1", "--no-dashboard", "--quiet"]
# the cell's clock as the direct simulation's, which runs at the pace of the plan's motions
EPICS = ["--epics", "--set", "epics.speed=1"]
XCSCT = ["xcsct", "--set", "xcsct.max_repeats=1", "--no-dashboard", "--quiet"]
EMF = re.compile(r"scan 0 at ([\d.]+) V, [\d.]+ mAh: EMF \(cathode\) ([\d.]+) ± ([\d.]+) over 3 heights")
REPORT = re.compile(r"scan 0 at ([\d.]+) V, ([\d.]+) mAh: centre of rotation ([\d.]+) px; mean NMC532_c ([\d.]+) Å")


def _demo(tmp_path, name: str, *extra: str, mode: list[str] = XRDCT) -> tuple[str, object]:
    done = subprocess.run([*OPERANDO, "demo", *mode, "--out", str(tmp_path / name), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (recorded,) = (p for p in (tmp_path / name).glob("*.h5") if p.suffixes == [".h5"])
    with RunFileReader(recorded) as reader:
        return done.stdout, reader.summary()


def test_the_epics_demo_gives_the_direct_simulations_xrdct_result(tmp_path):
    direct_out, direct = _demo(tmp_path, "direct")
    epics_out, epics = _demo(tmp_path, "epics", *EPICS)
    assert epics.exit_status == direct.exit_status == "success"
    (direct_stream,) = direct.streams
    (epics_stream,) = epics.streams
    assert epics_stream.n_frames == direct_stream.n_frames == 64 * 48  # every frame of the scan, through PV Access
    assert (epics_stream.missing, epics_stream.late) == (0, 0)
    assert "0 lost to both" in epics_out
    (direct_numbers,) = (tuple(map(float, m)) for m in REPORT.findall(direct_out))
    (epics_numbers,) = (tuple(map(float, m)) for m in REPORT.findall(epics_out))
    voltage, _, centre, lattice = epics_numbers
    assert voltage == pytest.approx(direct_numbers[0], abs=0.05)  # the same cell, charged as long
    assert centre == pytest.approx(direct_numbers[2], abs=0.25)  # px
    assert lattice == pytest.approx(direct_numbers[3], abs=0.002)  # Å: the maps' noise is ~0.001


def test_the_epics_demo_gives_the_direct_simulations_xcsct_result(tmp_path):
    direct_out, direct = _demo(tmp_path, "direct", mode=XCSCT)
    epics_out, epics = _demo(tmp_path, "epics", *EPICS, mode=XCSCT)
    assert epics.exit_status == direct.exit_status == "success"
    frames = {stream.name: (stream.n_frames, stream.missing) for stream in epics.streams}
    assert frames == {stream.name: (stream.n_frames, 0) for stream in direct.streams}  # the HEXITEC's in batches
    (direct_numbers,) = (tuple(map(float, m)) for m in EMF.findall(direct_out))
    (epics_numbers,) = (tuple(map(float, m)) for m in EMF.findall(epics_out))
    # the EMF (the lithium in the cathode) within four of their combined standard errors (the voltage
    # is not compared: the IOC's potentiostat reads 10 times a second, the simulated one every 30 s,
    # so "at the scan's start" is another moment of the first charging step's rise)
    sigma = (epics_numbers[2] ** 2 + direct_numbers[2] ** 2) ** 0.5
    assert abs(epics_numbers[1] - direct_numbers[1]) <= 4 * sigma, (epics_numbers, direct_numbers)
