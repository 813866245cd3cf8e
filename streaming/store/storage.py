"""When the storage fills up under the recorder: which errors say so, and what a run lost.

A full disk, an exhausted quota and a file-size limit (``ulimit -f``) all end the same way for
a run's file: it cannot grow. The recorder closes it where it stands (readable up to its last
flush, SWMR) and counts what of the run it does not hold (:class:`StorageFull`).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streaming.errors import RunFileError

from .runreader import RunFileReader

__all__ = ["StorageFull", "is_storage_full", "readable"]

logger = logging.getLogger(__name__)

_STORAGE_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_storage_full(error: OSError) -> bool:
    """Whether ``error`` (h5py's too) says the storage can take no more."""
    return error.errno in _STORAGE_FULL


@dataclass(frozen=True)
class StorageFull:
    """A run whose file could not grow: where, why, and what its file holds."""

    path: Path | None
    error: str
    frames_kept: int
    documents_kept: int

    def line(self, run_uid: str, arrived: Mapping[str, int]) -> str:
        """In words, with what of the run ``arrived`` (``frames``, ``documents``) and is lost."""
        frames_lost = arrived.get("frames", 0) - self.frames_kept
        documents_lost = arrived.get("documents", 0) - self.documents_kept
        return (
            f"run {run_uid}: storage full writing {self.path} ({self.error}); the file is readable up to its "
            f"last flush; {frames_lost} frames and {documents_lost} documents after that not recorded"
        )


def readable(path: Path | None) -> tuple[int, int]:
    """Frames (all streams) and documents a reader finds in a run file (none: 0, 0)."""
    if path is None or not Path(path).exists():
        return 0, 0
    try:
        with RunFileReader(path) as reader:
            return sum(reader.n_frames(stream) for stream in reader.streams), reader.n_documents
    except (OSError, RunFileError, KeyError) as error:
        logger.error("%s cannot be read after its storage filled (%s): all of its run counted as lost", path, error)
        return 0, 0
