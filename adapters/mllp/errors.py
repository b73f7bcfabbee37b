"""Exceptions raised by the MLLP edge."""
from __future__ import annotations


class MllpError(Exception):
    """Base class of every MLLP failure."""


class MllpFrameTooLarge(MllpError):
    """A message grew past the configured size limit.

    ``messages`` holds the complete messages the same ``feed`` call found
    before the oversized one, so a caller can still handle them in order.
    """

    def __init__(self, limit: int, messages: list[bytes] | None = None) -> None:
        super().__init__(f"MLLP message larger than {limit} bytes")
        self.limit = limit
        self.messages: list[bytes] = messages or []


class MllpTimeout(MllpError):
    """Connecting, or waiting for the reply, took longer than allowed."""


class MllpConnectionError(MllpError):
    """The connection could not be made, or broke before the reply was read."""
