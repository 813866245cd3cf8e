"""The recorder's settings.

- :class:`RecorderConfig`: where the run files go, which publishers to connect to, and the
  recorder's limits and timers, validated when built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streaming.errors import ConfigError
from streaming.wire.protocol import DEFAULT_MAX_FRAME_BYTES
from streaming.wire.receiver import DEFAULT_BUFFER_BYTES
from streaming.wire.transport import DEFAULT_DOCUMENT_ADDRESS, DEFAULT_FRAME_ADDRESS, DEFAULT_FRAME_HWM

from .chunks import COMPRESSIONS

__all__ = ["RecorderConfig"]


@dataclass(frozen=True, kw_only=True)
class RecorderConfig:
    """Settings of a :class:`~streaming.store.recorder.Recorder`.

    Attributes
    ----------
    out_dir : Path
        Folder for the run files (created if missing).
    document_address, frame_address : str
        Endpoints of the document and frame publishers to connect to.
    compression : str
        Frame compression, one of :data:`~streaming.store.chunks.COMPRESSIONS`.
    flush_interval_s : float
        Seconds between flushes; a SIGKILL loses at most what arrived in the last interval.
    linger_s : float
        Seconds a run's file stays open after its stop document, for late frames.
    pending_timeout_s : float
        Seconds frames wait for their run's start document before getting a file of their own.
    max_pending_bytes : int
        Bytes of such waiting frames held in memory before they get a file of their own.
    max_frame_bytes : int
        Largest frame accepted.
    frame_hwm : int
        Receive high-water mark of the frame socket, messages.
    buffer_bytes : int
        Most bytes of frames received and not yet written (:mod:`streaming.wire.receiver`): a
        burst or a slow write costs buffer, not frames.
    """

    out_dir: Path
    document_address: str = DEFAULT_DOCUMENT_ADDRESS
    frame_address: str = DEFAULT_FRAME_ADDRESS
    compression: str = "bitshuffle-lz4"
    flush_interval_s: float = 0.5
    linger_s: float = 2.0
    pending_timeout_s: float = 2.0
    max_pending_bytes: int = 512 * 2**20
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    frame_hwm: int = DEFAULT_FRAME_HWM
    buffer_bytes: int = DEFAULT_BUFFER_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"recorder.compression: must be one of {COMPRESSIONS}, got {self.compression!r}")
        for name in ("flush_interval_s", "linger_s", "pending_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"recorder.{name}: must be a number > 0 (seconds), got {value!r}")
        for name in ("max_pending_bytes", "max_frame_bytes", "frame_hwm", "buffer_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"recorder.{name}: must be an int > 0, got {value!r}")
