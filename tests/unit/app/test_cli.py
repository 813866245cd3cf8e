"""The ``operando`` command: the recorder as a real process (signals, SIGKILL), replay and
info through the command line, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import zmq
from event_model import compose_run

from streaming.app.cli import main
from streaming.errors import RunFileError
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, wait_until

OPERANDO = [sys.executable, "-m", "streaming.app.cli"]


def start_recorder(out_dir, documents, frames, *extra):
    process = subprocess.Popen(
        [*OPERANDO, "record", "--out", str(out_dir), "--docs", documents.address, "--frames", frames.address, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        documents.wait_for_subscribers(1, timeout_s=60)
        frames.wait_for_subscribers(1, timeout_s=60)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process


def frames_on_disk(out_dir, stream="pilatus") -> int:
    """Frames a live (SWMR) reader sees in the only run file of ``out_dir``; 0 if none yet."""
    files = list(out_dir.glob("*.h5"))
    if len(files) != 1:
        return 0
    try:
        with RunFileReader(files[0]) as reader:
            return reader.n_frames(stream) if stream in reader.streams else 0
    except (OSError, KeyError, RunFileError):  # caught mid-restructure: try again
        return 0


def frame(i: int) -> np.ndarray:
    return (np.arange(64 * 48, dtype="<i4").reshape(64, 48) * 7 + i) % 1009


def test_after_sigkill_the_file_opens_and_holds_every_flushed_frame(tmp_path):
    with DocumentPublisher(LOOPBACK) as documents, FramePublisher(LOOPBACK) as frames:
        process = start_recorder(tmp_path, documents, frames, "--flush-interval", "0.05")
        try:
            bundle = compose_run()
            uid = bundle.start_doc["uid"]
            documents("start", bundle.start_doc)
            for i in range(40):
                frames.publish("pilatus", frame(i), run_uid=uid, indices={"i": i})
            wait_until(lambda: frames_on_disk(tmp_path) == 40, timeout_s=60)
            for i in range(40, 80):  # in flight when the recorder dies
                frames.publish("pilatus", frame(i), run_uid=uid, indices={"i": i})
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(30)
            process.communicate()
    assert process.returncode == -signal.SIGKILL
    (path,) = tmp_path.glob("*.h5")
    with RunFileReader(path) as reader:
        stored = list(reader.frames("pilatus"))
        assert len(stored) >= 40
        for header, data, *_ in stored:
            assert header.indices == {"i": header.seq}
            np.testing.assert_array_equal(data, frame(header.seq))
        assert [name for name, *_ in reader.documents()] == ["start"]
        assert not reader.summary().complete


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_close_the_file_cleanly(tmp_path, signum):
    with DocumentPublisher(LOOPBACK) as documents, FramePublisher(LOOPBACK) as frames:
        process = start_recorder(tmp_path, documents, frames)
        try:
            bundle = compose_run()
            uid = bundle.start_doc["uid"]
            documents("start", bundle.start_doc)
            for i in range(25):
                frames.publish("pilatus", frame(i), run_uid=uid)
            wait_until(lambda: frames_on_disk(tmp_path) == 25, timeout_s=60)
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr
    assert uid in stdout
    (path,) = tmp_path.glob("*.h5")
    with h5py.File(path, "r") as file:  # a clean close: no SWMR flag needed to read it
        assert file["entry/instrument/pilatus/data"].shape[0] == 25
        assert not file["entry"].attrs["complete"]  # no stop document came
        assert "end_time" in file["entry"].attrs


def test_record_and_replay_commands_reproduce_a_run(tmp_path, recorded_file, small_run):
    # replay binds, the recorder connects: take two free ports for them to meet on
    ports = []
    with zmq.Context.instance().socket(zmq.REP) as probe:
        for _ in range(2):
            port = probe.bind_to_random_port("tcp://127.0.0.1")
            ports.append(port)
            probe.unbind(f"tcp://127.0.0.1:{port}")
    docs_address, frames_address = (f"tcp://127.0.0.1:{port}" for port in ports)
    out_dir = tmp_path / "again"
    recorder = subprocess.Popen(
        [
            *OPERANDO,
            "record",
            "--out",
            str(out_dir),
            "--docs",
            docs_address,
            "--frames",
            frames_address,
            "--linger",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        replayed = subprocess.run(
            [*OPERANDO, "replay", str(recorded_file), "--fast", "--docs", docs_address, "--frames", frames_address],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replayed.returncode == 0, replayed.stderr
        assert f"{small_run.n_frames} frames" in replayed.stdout
        wait_until(lambda: frames_on_disk(out_dir) == small_run.n_frames, timeout_s=60)
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.communicate(timeout=30)
    (again,) = out_dir.glob("*.h5")
    with RunFileReader(recorded_file) as first, RunFileReader(again) as second:
        for (a, data_a, *_), (b, data_b, *_) in zip(first.frames("pilatus"), second.frames("pilatus"), strict=True):
            assert a == b and data_a.tobytes() == data_b.tobytes()
        assert [d[:2] for d in first.documents()] == [d[:2] for d in second.documents()]


def test_info_reports_runs_streams_counts_and_sizes(recorded_file, small_run, capsys):
    assert main(["info", str(recorded_file)]) == 0
    text = capsys.readouterr().out
    assert "synthetic_zigzag" in text and "complete (success)" in text
    assert re.search(rf"pilatus\s+{small_run.n_frames}\s+48 x 40\s+<i4", text)
    assert main(["info", "--json", str(recorded_file)]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["streams"][0]["n_frames"] == small_run.n_frames
    assert summary["streams"][0]["missing"] == 0
    assert summary["document_counts"] == {"start": 1, "descriptor": 1, "event": small_run.n_frames, "stop": 1}
    with RunFileReader(recorded_file) as reader:
        assert summary["streams"][0]["stored_bytes"] == reader.frame_data("pilatus").id.get_storage_size()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["info", "/no/such/file.h5"], "no such file: /no/such/file.h5"),
        (["info", __file__], "is not a readable HDF5 file"),
        (["replay", "/no/such/file.h5"], "no such file"),
        (["replay", "{recorded}", "--speed", "-1"], "replay.speed: must be > 0"),
        (["replay", "{recorded}", "--start", "5", "--stop", "1"], "replay.stop_s: must be after start_s"),
        (["record", "--out", "{tmp}", "--flush-interval", "0"], "recorder.flush_interval_s: must be a number > 0"),
        (["record", "--out", "{tmp}", "--frames", "nonsense://x"], "error"),
        (["simulate", "xrdct", "--preset", "tiny", "--soc", "1.5", "--out", "{tmp}"], "soc must be within [0, 1]"),
        (["demo", "--set", "xrdct.prest=tiny"], "xrdct.prest: unknown key (did you mean 'xrdct.preset'?)"),
        (["demo", "--set", "xrdct.workers='two'"], "xrdct.workers: expected int, got 'two'"),
        (["demo", "--set", "potentiostat.v_max=4.6"], "potentiostat.v_max: 4.6 V is outside the safe range"),
        (["demo", "--set", "xrdct.poni='/no/such.poni'"], "xrdct.poni: no such file"),
        (["demo", "--config", "/no/such.toml"], "no such configuration file"),
        (["demo", "--set", "potentiostat.protocol='CC charge to 4.2 V at fast'"], "cannot read the rate 'fast'"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_code_2(argv, fragment, recorded_file, tmp_path):
    argv = [arg.format(recorded=recorded_file, tmp=tmp_path) for arg in argv]
    result = subprocess.run([*OPERANDO, *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_streams_records_replays_and_compares(tmp_path, capsys):
    assert main(["demo", "synthetic", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "identical to the original" in text
    recorded = list((tmp_path / "recorded").glob("*.h5"))
    replayed = list((tmp_path / "replayed").glob("*.h5"))
    assert len(recorded) == len(replayed) == 1
    with RunFileReader(recorded[0]) as reader:
        assert reader.n_frames("pilatus") == 20 * 32


def test_module_runs_as_a_script():
    result = subprocess.run([*OPERANDO, "--help"], capture_output=True, text=True, timeout=60, env=os.environ)
    assert result.returncode == 0 and "record" in result.stdout and "replay" in result.stdout


def test_simulate_writes_calibration_files_and_ground_truth(tmp_path, capsys):
    assert main(["simulate", "xrdct", "--preset", "tiny", "--soc", "0.25", "--out", str(tmp_path)]) == 0
    for name in ("CeO2.edf", "mask.edf", "geometry.poni", "truth.h5"):
        assert (tmp_path / name).is_file(), name
    with h5py.File(tmp_path / "truth.h5", "r") as file:
        assert file["truth"].attrs["soc"] == 0.25
    assert "truth" in capsys.readouterr().out


def test_bench_tabulates_the_ratios_of_the_recorded_results(tmp_path, monkeypatch, capsys):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "benchmark_toy.py").write_text("")
    results = {"benchmark": "toy", "kernel": {"ratio_to_reference": 6.5, "frames_per_s": 120.0}}
    (tmp_path / "benchmarks" / "results" / "toy.json").write_text(json.dumps(results))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--list"]) == 0
    assert capsys.readouterr().out.split() == ["toy"]
    assert main(["bench", "--no-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"benchmark": "toy", "metric": "kernel/ratio_to_reference",
                                                   "ratio": 6.5}]  # fmt: skip
    assert main(["bench", "absent"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_info_on_a_folders_h5_files_skips_the_analyses_result_files(recorded_file, tmp_path, capsys):
    """``operando info runs/*.h5`` globs the analyses' ``<run>.xrdct.h5`` too: they are named
    as such, not failed on (they have no /entry/documents)."""
    import shutil

    from streaming.store.filenames import analysis_file_name, analysis_of

    run = tmp_path / recorded_file.name
    shutil.copy(recorded_file, run)
    sidecar = tmp_path / analysis_file_name(run, "xrdct")
    with h5py.File(sidecar, "w") as results:
        results.create_group("entry/xrdct")
    assert [analysis_of(p) for p in (run, sidecar, tmp_path / f"{run.stem}.1.h5")] == [None, "xrdct", None]
    assert main(["info", *sorted(str(p) for p in tmp_path.glob("*.h5"))]) == 0
    printed = capsys.readouterr()
    assert str(run) in printed.out and str(sidecar) not in printed.out
    assert f"not run files: 1 analysis result file(s), {sidecar}" in printed.err


def test_the_demos_potentiostat_table_and_progress_bar_share_a_terminal_without_splicing(tmp_path):
    """On one terminal (a pty: stdout and stderr on the same screen) each row of the
    potentiostat's table is a line of its own above the progress bar (before: rows were
    written into the bar's line)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal's 120 x 40
    process = subprocess.Popen([*OPERANDO, "demo", "xcsct", "--set", "xcsct.max_repeats=1", "--out", str(tmp_path)],
                               stdout=follower, stderr=follower, close_fds=True)  # fmt: skip
    os.close(follower)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closed: the process ended
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0, screen.decode(errors="replace")[-3000:]
    # what each line shows once carriage returns are applied (tqdm rewrites its line after "\r";
    # the terminal ends each line with "\r\n")
    shown = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in screen.decode(errors="replace").split("\n")]
    rows = [line for line in shown if re.match(r"\|\s+\d+ \|", line)]
    bars = [line for line in shown if "frame/s" in line or "%|" in line]
    assert rows and bars, "\n".join(shown[-40:])
    assert not [line for line in rows if "%|" in line or "frame/s" in line]
    assert not [line for line in shown if re.search(r"frame/s.*\|\s+\d+ \|", line)], "\n".join(shown)
