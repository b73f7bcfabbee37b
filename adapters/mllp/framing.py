"""MLLP framing without sockets: wrap a message, and cut a byte stream into messages.

An MLLP block is ``VT message FS CR`` (0x0B … 0x1C 0x0D). HL7 v2 content never
holds VT or FS, which is what makes the framing unambiguous.

How :class:`MllpFramer` treats a stream that bends the rules:

* Bytes outside a block (before a VT) are skipped and counted in
  ``skipped_bytes``.
* FS ends the block on its own: the message is handed out as soon as FS is
  seen, without waiting for the CR, so a sender that omits the CR and then
  waits for its ACK is still answered. When the byte after FS arrives and is
  not CR, ``framing_anomalies`` is counted and that byte is read as the start
  of whatever follows (a VT, or junk to skip).
* A VT inside an open block means the sender started over: the partial block
  is dropped (its bytes count as skipped, plus one framing anomaly) and a new
  block starts at that VT.
* A message longer than ``max_message_bytes`` raises
  :class:`~adapters.mllp.errors.MllpFrameTooLarge` as soon as its length is
  past the limit, whether or not its FS has arrived. The framer then discards
  everything up to the next VT (its end, and any junk after it), counted in
  ``discarded_bytes``. Bytes of the same chunk after the failure point are
  kept and examined by the next ``feed`` call (``feed(b"")`` will do).

Given the same bytes, the framer returns the same messages, raises the same
number of oversize errors and ends with the same counters however the bytes
are split into chunks (the property tests hold it to that).
"""
from __future__ import annotations

from .errors import MllpFrameTooLarge

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_VT = b"\x0b"
_FS = b"\x1c"
_CR = 0x0D

DEFAULT_MAX_MESSAGE_BYTES = 1_048_576


def frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP block: ``VT + message + FS CR``."""
    return START_BLOCK + message + END_BLOCK


class MllpFramer:
    """Incremental MLLP decoder: feed it whatever the socket gave, get messages back."""

    __slots__ = ("max_message_bytes", "skipped_bytes", "discarded_bytes",
                 "framing_anomalies", "_partial", "_in_block", "_discarding",
                 "_expect_cr", "_pending")

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        self.max_message_bytes = max_message_bytes
        self.skipped_bytes = 0       # bytes outside any block
        self.discarded_bytes = 0     # rest of an oversized block, skipped up to the next VT
        self.framing_anomalies = 0   # FS without CR, or VT inside an open block
        self._partial = bytearray()  # content of the open block so far
        self._in_block = False
        self._discarding = False
        self._expect_cr = False
        self._pending = b""          # unread rest of a chunk after an oversize error

    @property
    def in_block(self) -> bool:
        """True while a block has started and its FS has not arrived."""
        return self._in_block

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the open block held so far."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the complete messages (unframed) it finished."""
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        if self._expect_cr and end:
            self._expect_cr = False
            if data[0] == _CR:
                pos = 1
            else:
                self.framing_anomalies += 1
        while pos < end:
            if self._in_block:
                pos = self._read_block(data, pos, end, out)
            else:
                pos = self._skip_to_block(data, pos, end)
        return out

    def _skip_to_block(self, data: bytes, pos: int, end: int) -> int:
        vt = data.find(_VT, pos)
        skipped = (end if vt < 0 else vt) - pos
        if self._discarding:
            self.discarded_bytes += skipped
        else:
            self.skipped_bytes += skipped
        if vt < 0:
            return end
        self._discarding = False
        self._in_block = True
        return vt + 1

    def _read_block(self, data: bytes, pos: int, end: int, out: list[bytes]) -> int:
        fs = data.find(_FS, pos)
        stop = end if fs < 0 else fs
        vt = data.find(_VT, pos, stop)
        block_end = stop if vt < 0 else vt
        if len(self._partial) + (block_end - pos) > self.max_message_bytes:
            self._oversize(data, pos, block_end, out)
        if vt >= 0:  # the sender started over: drop the partial block
            self.framing_anomalies += 1
            self.skipped_bytes += len(self._partial) + (vt - pos)
            self._partial.clear()
            return vt + 1
        if fs < 0:
            self._partial += data[pos:end]
            return end
        if self._partial:
            self._partial += data[pos:fs]
            message = bytes(self._partial)
            self._partial.clear()
        else:
            message = data[pos:fs]
        out.append(message)
        self._in_block = False
        after = fs + 1
        if after == end:
            self._expect_cr = True
            return end
        if data[after] == _CR:
            return after + 1
        self.framing_anomalies += 1
        return after

    def _oversize(self, data: bytes, pos: int, block_end: int, out: list[bytes]) -> None:
        """Drop the block, switch to discarding up to the next VT, keep the rest, raise."""
        self.discarded_bytes += len(self._partial) + (block_end - pos)
        self._partial.clear()
        self._in_block = False
        self._discarding = True
        self._pending = data[block_end:]
        raise MllpFrameTooLarge(self.max_message_bytes, out)
