"""operando-stream: real-time streaming acquisition and analysis for operando battery
experiments at synchrotron beamlines.

The package ``streaming`` holds the transport (wire protocol, ZeroMQ endpoints), the
recorder and replay, the consumers and the command line; ``streaming.processing`` holds
the pure algorithms. ``plans``, ``devices`` and ``simulators`` are sibling packages.
"""

import logging

from .errors import (
    ConfigError,
    DocumentDecodeError,
    FrameDecodeError,
    HandshakeTimeoutError,
    MessageDecodeError,
    OperandoStreamError,
    RunFileError,
)
from .protocol import PROTOCOL_VERSION, Frame, FrameHeader
from .recorder import Recorder, RecorderConfig, RecorderThread
from .replay import ReplayConfig, replay
from .runfile import RunFileWriter
from .runreader import RunFileReader
from .transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber

__all__ = [
    "PROTOCOL_VERSION",
    "ConfigError",
    "DocumentDecodeError",
    "DocumentPublisher",
    "DocumentSubscriber",
    "Frame",
    "FrameDecodeError",
    "FrameHeader",
    "FramePublisher",
    "FrameSubscriber",
    "HandshakeTimeoutError",
    "MessageDecodeError",
    "OperandoStreamError",
    "Recorder",
    "RecorderConfig",
    "RecorderThread",
    "ReplayConfig",
    "RunFileError",
    "RunFileReader",
    "RunFileWriter",
    "replay",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
