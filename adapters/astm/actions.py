"""What the E1381 state machines ask their host (a socket loop) to do.

The machines in :mod:`adapters.astm.e1381` take bytes and timer expiries in
and return a list of these actions; they never do I/O themselves.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Send:
    """Write these bytes to the peer."""
    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer:
    """(Re)arm the machine's single timer; call ``timeout()`` when it fires."""
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm the machine's timer."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A reassembled E1394 message: its records, each ending in CR.

    ``complete`` is False for records that ended with the sender's EOT
    instead of an L (terminator) record.
    """
    data: bytes
    complete: bool = True


@dataclass(frozen=True, slots=True)
class TransferEnded:
    """The sender ended its transfer with EOT; the line is neutral again."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """The transfer ended abnormally; the line is neutral again.

    ``reason`` is plain text without message content (safe to log).
    """
    reason: str


@dataclass(frozen=True, slots=True)
class LineYielded:
    """Sender (computer role) lost an ENQ contention: feed the peer's ENQ to
    the receiver; the sender bids again after the contention wait."""


@dataclass(frozen=True, slots=True)
class TransferComplete:
    """Sender: every frame was acknowledged and EOT sent."""


@dataclass(frozen=True, slots=True)
class Interrupted:
    """Sender: the receiver answered EOT (interrupt); the sender stopped.

    ``unsent_frames`` frames were not delivered.
    """
    unsent_frames: int


Action = (Send | SetTimer | CancelTimer | MessageReceived | TransferEnded | Aborted
          | LineYielded | TransferComplete | Interrupted)
