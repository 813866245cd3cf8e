"""The recorder's storage fills up mid-run (``operando record`` under a file-size limit, as
``ulimit -f`` sets: no root, no loop device): one clear error, the file readable up to its
last flush, every frame and document of the run accounted for, and the next run recorded."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from simulators.synthetic import SyntheticRun
from streaming.app.demo import publish_synthetic_run
from streaming.store.runreader import RunFileReader
from streaming.store.storage import readable
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, wait_until

ROOT = Path(__file__).resolve().parents[3]
FILE_SIZE_LIMIT = 8 << 20  # bytes: the first run's 640 noisy frames need ~25 MB


def _complete(folder: Path, run_uid: str) -> bool:
    for path in folder.glob(f"*_{run_uid[:8]}.h5"):
        try:
            with RunFileReader(path) as reader:
                return reader.summary().complete
        except (OSError, ValueError, KeyError):
            return False
    return False


def test_a_full_disk_ends_the_runs_file_cleanly_and_counts_what_was_lost(tmp_path):
    big = SyntheticRun(n_angles=20, n_translations=32, frame_shape=(256, 256), seed=1)
    small = SyntheticRun(n_angles=3, n_translations=7, frame_shape=(48, 40), seed=2)
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        recorder = subprocess.Popen(
            ["sh", "-c", f'ulimit -f {FILE_SIZE_LIMIT // 1024} && exec "$@"', "sh",  # ulimit -f counts KiB
             sys.executable, "-m", "streaming.app.cli", "record", "--out", str(tmp_path), "--docs", documents.address,
             "--frames", frames.address, "--linger", "0.3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 60)
            frames.wait_for_subscribers(1, 60)
            # a first flush holds frames (the recorder flushes every 0.5 s), then the disk fills
            big_uid = publish_synthetic_run(big, documents, frames, after_frame=lambda n: n != 50 or wait_until(
                lambda: readable(next(tmp_path.glob("*.h5"), tmp_path / "none"))[0] >= 50))  # fmt: skip
            small_uid = publish_synthetic_run(small, documents, frames)
            wait_until(lambda: _complete(tmp_path, small_uid), timeout_s=60)  # after the big one: all handled
        finally:
            recorder.send_signal(signal.SIGINT)
            _, err = recorder.communicate(timeout=120)
    assert recorder.returncode == 1, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("operando record: error:")]
    found = re.search(r"run (\S+): storage full writing (\S+) \(File too large\); the file is readable up to its last "
                      r"flush; (\d+) frames and (\d+) documents after that not recorded", line)  # fmt: skip
    assert found and found[1] == big_uid, line
    assert "Traceback" not in err
    frames_lost, documents_lost = int(found[3]), int(found[4])
    with RunFileReader(found[2]) as reader:
        kept_frames, kept_documents = reader.n_frames("pilatus"), reader.n_documents
        summary = reader.summary()
    n_big = big.n_angles * big.n_translations
    assert kept_frames > 0 and frames_lost > 0
    assert kept_frames + frames_lost == n_big  # every frame accounted for
    assert kept_documents + documents_lost == n_big + 3  # start, descriptor, an event a frame, stop
    assert not summary.complete
    (small_file,) = [path for path in tmp_path.glob("*.h5") if str(path) != found[2]]
    with RunFileReader(small_file) as reader:
        assert reader.summary().complete and reader.n_frames("pilatus") == small.n_angles * small.n_translations
