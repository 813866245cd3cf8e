"""Exceptions of operando-stream.

Every error raised on purpose derives from :class:`OperandoStreamError`, so callers can catch
the whole family at once; each subclass also derives from the builtin it refines (the
event-model habit), so ``except ValueError`` keeps working.

- :class:`FrameDecodeError`: a frame message failed validation (names the field).
- :class:`DocumentDecodeError`: a document message failed validation (names the field).
- :class:`ProductDecodeError`: a live product message failed validation (names the field).
- :class:`ConfigError`: a configuration value is invalid (names the key).
- :class:`HandshakeTimeoutError`: the expected peers did not connect in time.
- :class:`RunFileError`: a file is not a readable run file.
- :class:`LimitError`: a setpoint, protocol or move outside a device's limits (refused
  before anything moves).
- :class:`DeviceError`: a device could not do what it was asked (missed triggers, no run).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeviceError",
    "DocumentDecodeError",
    "FrameDecodeError",
    "HandshakeTimeoutError",
    "LimitError",
    "MessageDecodeError",
    "OperandoStreamError",
    "ProductDecodeError",
    "RunFileError",
]


class OperandoStreamError(Exception):
    """Root of every exception raised on purpose by operando-stream."""


class MessageDecodeError(OperandoStreamError, ValueError):
    """A message from the wire failed validation.

    Parameters
    ----------
    field : str
        The part of the message at fault (``"parts"``, ``"header"``, ``"dtype"``, ...).
        Receivers count rejected messages by this name.
    problem : str
        What is wrong with it, in words, with the offending value.
    """

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class FrameDecodeError(MessageDecodeError):
    """A frame-channel message failed validation."""


class DocumentDecodeError(MessageDecodeError):
    """A document-channel message failed validation."""


class ProductDecodeError(MessageDecodeError):
    """A products-channel message failed validation."""


class ConfigError(OperandoStreamError, ValueError):
    """A configuration value is invalid; the message names the key and the problem."""


class HandshakeTimeoutError(OperandoStreamError, TimeoutError):
    """The expected subscribers or peers did not connect before the timeout."""


class RunFileError(OperandoStreamError, ValueError):
    """A file is not a readable operando-stream run file."""


class LimitError(OperandoStreamError, ValueError):
    """A setpoint, protocol or move lies outside a device's configured limits.

    Raised before anything moves or changes: the device is left as it was.
    """


class DeviceError(OperandoStreamError, RuntimeError):
    """A device could not do what it was asked (missed triggers, no open run, ...)."""
