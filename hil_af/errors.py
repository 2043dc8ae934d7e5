"""Exception types shared by the whole package.

The CLI maps them to exit codes (docs/cli.md): ``BadInput`` and its
subclasses exit 2, ``DeviceError`` and ``FocusFailed`` exit 1.
"""

from __future__ import annotations


class HilAfError(Exception):
    """Base class of every error hil-af raises on purpose."""


class BadInput(HilAfError, ValueError):
    """The caller gave something wrong: a URL, an argument, a file."""


class FormatError(BadInput):
    """A file does not follow its format; the message names the file and the rule."""


class UnknownScheme(BadInput):
    """A driver URL names a scheme nobody registered."""


class DeviceError(HilAfError, OSError):
    """A device failed after the retries it was allowed."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A device did not answer in time."""


class FocusFailed(HilAfError):
    """An autofocus cycle ended in the Failed state; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
