"""Every multi-process flow the README shows, as a user runs it: each ``operando`` command a
process of its own on loopback, a recorded run of 3072 frames replayed as fast as the
receivers take it (so that queues fill), and the counts reconciled at the far end: nothing
missing, nothing twice, results equal to ``operando analyze`` of the same run."""

from __future__ import annotations

import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from simulators.xrdct_presets import PRESETS
from streaming.store.runreader import RunFileReader
from tests.conftest import LOOPBACK, wait_until
from tests.flows.conftest import TINY, RecordedRun, assert_same_xrdct, finish, replay_addresses, services, start


def _assert_all_confirmed(replay_out: str, receiver: str, run: RecordedRun) -> None:
    assert re.search(rf"{receiver} .*: {run.n_documents} of {run.n_documents} documents confirmed\n", replay_out)
    assert re.search(rf"{receiver} .*: {run.n_frames} of {run.n_frames} frames confirmed\n", replay_out)


@pytest.mark.parametrize("pace", [["--fast"], ["--speed", "8"]], ids=["fast", "speed-8"])
def test_operando_consume_gets_every_frame_of_a_replay(xrdct_run, tmp_path, pace):
    """``operando consume`` + ``operando replay``: the replay ends only once the consumer has
    confirmed every document and frame (before: the last ~90 frames were lost when the replay
    process ended, and it could abort in libzmq)."""
    with services() as started:
        replay = start("replay", str(xrdct_run.path), "--docs", LOOPBACK, "--frames", LOOPBACK, *pace)
        started.append(replay)
        documents, frames = replay_addresses(replay)
        consume = start("consume", "xrdct", "--docs", documents, "--frames", frames, "--out", str(tmp_path), *TINY)
        started.append(consume)
        finish(replay)
        wait_until(lambda: any(tmp_path.glob("*.series.png")), timeout_s=300)  # written last
    assert replay.returncode == 0, replay.out + replay.err[-3000:]
    _assert_all_confirmed(replay.out, "consumer", xrdct_run)
    assert consume.returncode == 0, consume.err[-3000:]
    assert "missing" not in consume.err and "missing" not in consume.out
    assert_same_xrdct(tmp_path / xrdct_run.reference.name, xrdct_run.reference)


def test_a_replay_recorded_again_is_the_run_frame_for_frame(xrdct_run, tmp_path):
    """``operando record`` + ``operando replay --fast``: the recorder confirms every message,
    and its file holds the run's documents and frames, headers and pixels, as the original."""
    with services() as started:
        replay = start("replay", str(xrdct_run.path), "--docs", LOOPBACK, "--frames", LOOPBACK, "--fast")
        started.append(replay)
        documents, frames = replay_addresses(replay)
        record = start("record", "--docs", documents, "--frames", frames, "--out", str(tmp_path))
        started.append(record)
        finish(replay)
    assert replay.returncode == 0, replay.out + replay.err[-3000:]
    _assert_all_confirmed(replay.out, "recorder", xrdct_run)
    assert record.returncode == 0, record.err[-3000:]
    (again,) = tmp_path.glob("*.h5")
    with RunFileReader(xrdct_run.path) as original, RunFileReader(again) as copy:
        assert [d[:2] for d in copy.documents()] == [d[:2] for d in original.documents()]
        assert copy.streams == original.streams
        n_frames = 0
        for stream in original.streams:
            pairs = zip(original.frames(stream), copy.frames(stream), strict=True)
            for (header, data, *_), (header_again, data_again, *_) in pairs:
                assert header_again == header
                np.testing.assert_array_equal(data_again, data)
                n_frames += 1
    assert n_frames == xrdct_run.n_frames


def test_integration_over_worker_processes_gets_every_frame_of_a_replay(xrdct_run, tmp_path):
    """``operando distribute`` + 2 x ``operando integrate`` + ``operando consume --patterns`` +
    ``operando replay --fast``, six processes: the workers' shares add up to the run, the
    builder places every pattern, and its result is ``operando analyze``'s."""
    with services() as started:
        replay = start("replay", str(xrdct_run.path), "--docs", LOOPBACK, "--frames", LOOPBACK, "--fast",
                       "--subscribers", "3", "--frame-subscribers", "1")  # fmt: skip
        started.append(replay)
        documents, frames = replay_addresses(replay)
        distributor = start("distribute", "--frames", frames, "--workers", LOOPBACK)
        started.append(distributor)
        builder = start("consume", "xrdct", "--docs", documents, "--frames", frames, "--patterns", LOOPBACK,
                        "--out", str(tmp_path), *TINY)  # fmt: skip
        started.append(builder)
        patterns = builder.first_line.split("XRD-CT patterns on ")[1].split(")")[0]
        workers = [start("integrate", "--docs", documents, "--frames", distributor.first_line.split()[-1],
                         "--to", patterns, *TINY) for _ in range(2)]  # fmt: skip
        started.extend(workers)
        finish(replay)
        wait_until(lambda: any(tmp_path.glob("*.series.png")), timeout_s=300)
    assert replay.returncode == 0, replay.out + replay.err[-3000:]
    # the builder and both workers confirm the documents; the distributor cannot confirm frames
    assert len(re.findall(rf": {xrdct_run.n_documents} of {xrdct_run.n_documents} documents confirmed",
                          replay.out)) == 3  # fmt: skip
    assert "1 frames subscription(s) cannot confirm" in replay.out
    failed = [(s.first_line, s.returncode, s.err[-1500:]) for s in started if s.returncode != 0]
    assert not failed, failed
    assert f"forwarded {xrdct_run.n_frames} frames" in distributor.out
    shares = [int(worker.out.split("integrated ")[1].split()[0]) for worker in workers]
    assert all(share > 0 for share in shares) and sum(shares) == xrdct_run.n_frames, shares
    assert "missing" not in builder.err
    assert_same_xrdct(tmp_path / xrdct_run.reference.name, xrdct_run.reference)


def test_the_main_job_integrates_on_worker_processes_without_loss(tmp_path):
    """``operando demo xrdct --set xrdct.workers=2``: a frame distributor and two integration
    worker processes feed the XRD-CT analysis; every pattern arrives, and the results are a
    complete scan's."""
    done = subprocess.run([sys.executable, "-m", "streaming.app.cli", "demo", "xrdct", "--preset", "tiny", "--out",
                           str(tmp_path), "--set", "xrdct.workers=2", "--set", "xrdct.n_scans=1"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "missing patterns" not in done.stdout and re.search(r"scan 0 at .*centre of rotation", done.stdout)
    (sidecar,) = tmp_path.glob("*.xrdct.h5")
    preset = PRESETS["tiny"]
    with h5py.File(sidecar, "r") as file:
        xrdct = file["entry/xrdct"]
        assert xrdct["patterns_interpolated"][()].tolist() == [0]
        assert xrdct["filled"][()].all()
        assert abs(xrdct["center_of_rotation_px"][0] - (preset.n_translations - 1) / 2) < 3
        assert np.nanmedian(xrdct["lattice_maps/NMC532_c"][()]) == pytest.approx(14.4, abs=0.15)
