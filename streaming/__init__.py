"""operando-stream: real-time streaming acquisition and analysis for operando battery
experiments at synchrotron beamlines.

The package ``streaming`` holds the transport (wire protocol, ZeroMQ endpoints), the
recorder and replay, the consumers and the command line; ``streaming.processing`` holds
the pure algorithms. ``plans``, ``devices`` and ``simulators`` are sibling packages.
"""

import logging

from streaming.store.recorder import Recorder, RecorderConfig, RecorderThread
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runfile import RunFileWriter
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import PROTOCOL_VERSION, Frame, FrameHeader
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber

from .errors import (
    ConfigError,
    DocumentDecodeError,
    FrameDecodeError,
    HandshakeTimeoutError,
    MessageDecodeError,
    OperandoStreamError,
    RunFileError,
)

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
