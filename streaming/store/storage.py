"""When the storage fills up under the recorder: which errors say so, and what a run lost.

A full disk, an exhausted quota and a file-size limit (``ulimit -f``) all end the same way for
a run's file: it cannot grow. The recorder closes it where it stands (readable up to its last
flush, SWMR) and counts what of the run it does not hold (:class:`StorageFull`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from streaming.errors import RunFileError

from .runreader import RunFileReader

__all__ = ["StorageFull", "is_storage_full", "readable"]

_STORAGE_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_storage_full(error: OSError) -> bool:
    """Whether ``error`` (h5py's too) says the storage can take no more."""
    return error.errno in _STORAGE_FULL


@dataclass
class StorageFull:
    """A run whose file could not grow: where, why, and what of the run was lost after it."""

    path: Path
    error: str
    frames_lost: int = 0
    documents_lost: int = 0

    def line(self, run_uid: str) -> str:
        return (
            f"run {run_uid}: storage full writing {self.path} ({self.error}); the file is readable up to its "
            f"last flush; {self.frames_lost} frames and {self.documents_lost} documents after that not recorded"
        )


def readable(path: Path) -> tuple[int, int]:
    """Frames (all streams) and documents a reader finds in a run file."""
    try:
        with RunFileReader(path) as reader:
            return sum(reader.n_frames(stream) for stream in reader.streams), reader.n_documents
    except (OSError, RunFileError, KeyError):
        return 0, 0
