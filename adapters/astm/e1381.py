"""Sans-io state machines for the ASTM E1381 / CLSI LIS01-A2 low-level protocol.

Two machines, one per direction of a transfer:

- :class:`Receiver` answers an ENQ bid with ACK (NAK when ``busy``), checks
  each frame's checksum and number, answers ACK or NAK, reassembles ETB/ETX
  frames into records and records into messages (H .. L), and ends on EOT.
- :class:`Sender` bids with ENQ, sends frames numbered 1..7,0 from 1,
  retransmits on NAK (at most ``max_attempts`` tries per frame, then EOT),
  and yields the line on ENQ contention when it plays the computer.

Both take bytes (``feed``) and timer expiries (``timeout``) in and return a
list of actions (:mod:`adapters.astm.actions`) out. Neither raises on any
input from the peer: anything unexpected is ignored, NAKed or ends the
transfer with :class:`~adapters.astm.actions.Aborted`.

Facts marked [K] in DOMAIN.md §3.2 (timers, retry count, frame size,
contention waits) are configuration with the documented values as defaults.
Deliberate tolerance beyond the standard, each noted where it happens:
bytes outside frames are ignored; a frame's CR LF trailer is optional;
lowercase checksum digits are accepted; a record ended by ETX without CR
gets one; non-control bytes sent to a sender are ignored rather than read as
NAK; a sender retransmits after an ACK timeout (strict E1381 aborts:
``retransmit_on_timeout=False``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .actions import (Aborted, Action, CancelTimer, Interrupted, LineYielded, MessageReceived,
                      Send, SetTimer, TransferComplete, TransferEnded)
from .frames import (ACK, ENQ, EOT, ETB, ETX, MAX_FRAME_TEXT, NAK, STX, checksum,
                     encode_records, next_frame_number, split_message)

_STX, _ETX, _ETB, _EOT, _ENQ, _ACK, _NAK = (c[0] for c in (STX, ETX, ETB, EOT, ENQ, ACK, NAK))
_IN_FRAME_CONTROL = re.compile(rb"[\x02\x03\x04\x05\x17]")
_HEX = frozenset(b"0123456789ABCDEFabcdef")


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Receiver settings.

    ``frame_timeout``: seconds to wait for the next frame (E1381: 30 [K]).
    ``max_frame_bytes``: largest frame text accepted; E1381 allows 240 [K]
    but real instruments send more, so the default is generous.
    ``max_message_bytes``: largest message (H .. L); bigger ones abort.
    ``confirm_messages``: hold the ACK of the frame that completes a message
    until :meth:`Receiver.accept` or :meth:`Receiver.reject` is called (so a
    message is acknowledged only once it is stored).
    ``strict_checksum_case``: refuse lowercase hex checksum digits.
    ``deliver_unterminated``: at EOT, deliver records that no L record
    closed (``complete=False``) instead of discarding them. Off by default:
    a sender that gives up also ends with EOT, and E1381 has the receiver
    discard the incomplete message; turn it on for instruments that never
    send an L record.
    """
    frame_timeout: float = 30.0
    max_frame_bytes: int = 64 * 1024
    max_message_bytes: int = 1024 * 1024
    confirm_messages: bool = False
    strict_checksum_case: bool = False
    deliver_unterminated: bool = False


class Receiver:
    """The receiving side of E1381 (the gateway, mostly)."""

    IDLE = "idle"
    RECEIVING = "receiving"
    DISCARDING = "discarding"      # message too big: frames dropped until EOT
    CONFIRMING = "confirming"      # waiting for accept()/reject()

    def __init__(self, config: ReceiverConfig | None = None) -> None:
        self.config = config or ReceiverConfig()
        self.busy = False          # answer NAK to ENQ while True
        self.state = self.IDLE
        self.stats = {"sessions": 0, "frames": 0, "naks": 0, "duplicates": 0,
                      "messages": 0, "aborts": 0, "garbage_bytes": 0}
        self._interrupt = False
        self._held = bytearray()   # input that arrived while CONFIRMING
        self._pending = None       # (fn, records) to commit on accept()
        self._reset_transfer()

    # -- public inputs ---------------------------------------------------
    @property
    def idle(self) -> bool:
        """True when the line is neutral from the receiver's point of view."""
        return self.state == self.IDLE

    def request_interrupt(self) -> None:
        """Answer the next good frame with EOT instead of ACK (ask the sender to stop)."""
        self._interrupt = True

    def feed(self, data: bytes) -> list[Action]:
        """Process bytes from the peer."""
        out: list[Action] = []
        i, n = 0, len(data)
        while i < n:
            if self.state == self.CONFIRMING:
                self._held += data[i:]
                break
            if self._frame is None:
                out += self._outside_frame(data[i])
                i += 1
            elif self._term is None:
                i = self._in_frame(data, i)
            else:
                i = self._in_checksum(data, i, out)
        return out

    def timeout(self) -> list[Action]:
        """The timer fired: no frame arrived in time."""
        if self.state == self.IDLE:
            return []
        self._pending = None
        self._held.clear()
        return self._abort(f"no frame within {self.config.frame_timeout:g} s")

    def accept(self) -> list[Action]:
        """Confirm the held message(s): ACK the frame that completed them."""
        if self.state != self.CONFIRMING or self._pending is None:
            return []
        fn, records = self._pending
        self._pending = None
        self._unit = bytearray()
        self._records = records
        self._commit_frame_number(fn)
        self.state = self.RECEIVING
        out = self._answer_good_frame()
        return out + self._release_held()

    def reject(self) -> list[Action]:
        """Refuse the held message(s): NAK the frame so the sender sends it again."""
        if self.state != self.CONFIRMING or self._pending is None:
            return []
        self._pending = None
        self.state = self.RECEIVING
        self.stats["naks"] += 1
        out: list[Action] = [Send(NAK), SetTimer(self.config.frame_timeout)]
        return out + self._release_held()

    # -- byte handling ---------------------------------------------------
    def _outside_frame(self, byte: int) -> list[Action]:
        if byte == _ENQ:
            return self._on_enq()
        if self.state == self.IDLE:
            self.stats["garbage_bytes"] += 1   # neutral line: only ENQ matters
            return []
        if byte == _STX:
            self._frame = bytearray()
            self._overflow = False
        elif byte == _EOT:
            return self._on_eot()
        else:
            self.stats["garbage_bytes"] += 1   # CR LF trailers, line noise
        return []

    def _in_frame(self, data: bytes, i: int) -> int:
        m = _IN_FRAME_CONTROL.search(data, i)
        end = m.start() if m else len(data)
        self._append_frame(data[i:end])
        if m is None:
            return end
        c = data[end]
        if c in (_ETX, _ETB):
            self._term = c
            self._cks = bytearray()
            return end + 1
        if c == _STX:                       # sender restarted the frame
            self.stats["garbage_bytes"] += len(self._frame)
            self._frame = bytearray()
            self._overflow = False
            return end + 1
        self._drop_frame()                  # ENQ/EOT: handled outside a frame
        return end

    def _in_checksum(self, data: bytes, i: int, out: list[Action]) -> int:
        c = data[i]
        if c in (_STX, _ENQ, _EOT):         # truncated frame: reprocess this byte
            self._drop_frame()
            return i
        self._cks.append(c)
        if len(self._cks) == 2:
            frame, term, overflow = bytes(self._frame), self._term, self._overflow
            cks = bytes(self._cks)
            self._drop_frame()
            out += self._on_frame(frame, term, cks, overflow)
        return i + 1

    def _append_frame(self, chunk: bytes) -> None:
        if self._overflow:
            return
        if len(self._frame) + len(chunk) > self.config.max_frame_bytes + 1:  # +1: FN
            self._overflow = True
            self._frame.clear()
        else:
            self._frame += chunk

    def _drop_frame(self) -> None:
        self._frame = None
        self._term = None
        self._cks = None
        self._overflow = False

    # -- protocol events -------------------------------------------------
    def _on_enq(self) -> list[Action]:
        out: list[Action] = []
        if self.state != self.IDLE:
            if (self.state == self.RECEIVING and self._last_fn is None
                    and not self._unit and not self._records):
                # Our ACK to the ENQ was lost and the sender bid again.
                return [Send(ACK), SetTimer(self.config.frame_timeout)]
            out += self._abort("new ENQ before EOT")
        if self.busy:
            self.stats["naks"] += 1
            return out + [Send(NAK)]
        self.state = self.RECEIVING
        self.stats["sessions"] += 1
        self._reset_transfer()
        return out + [Send(ACK), SetTimer(self.config.frame_timeout)]

    def _on_eot(self) -> list[Action]:
        out: list[Action] = [CancelTimer()]
        discarding = self.state == self.DISCARDING
        unit, records = self._unit, self._records
        self.state = self.IDLE
        self._reset_transfer()
        if discarding:
            return out + [TransferEnded()]
        if records and not self.config.deliver_unterminated:
            self.stats["aborts"] += 1
            return out + [Aborted(f"EOT before the L record; {len(records)} record(s) discarded")]
        if records:
            self.stats["messages"] += 1
            out.append(MessageReceived(b"".join(records), complete=False))
        if unit:
            self.stats["aborts"] += 1
            return out + [Aborted("EOT inside an unfinished record")]
        return out + [TransferEnded()]

    def _on_frame(self, frame: bytes, term: int, cks: bytes, overflow: bool) -> list[Action]:
        body = frame + bytes([term])
        if overflow:
            return self._too_big(f"frame longer than {self.config.max_frame_bytes} bytes")
        if not self._checksum_ok(body, cks) or not frame[:1].isdigit() or frame[0] > ord("7"):
            return self._nak()
        fn = frame[0] - ord("0")
        if self.state == self.DISCARDING:
            return [Send(ACK), SetTimer(self.config.frame_timeout)]
        if fn != self._expected:
            if self._last_fn is not None and fn == self._last_fn:
                self.stats["duplicates"] += 1   # our ACK was lost; sender repeated
                return [Send(ACK), SetTimer(self.config.frame_timeout)]
            return self._nak()
        self.stats["frames"] += 1
        return self._accept_frame(fn, frame[1:], term)

    def _accept_frame(self, fn: int, text: bytes, term: int) -> list[Action]:
        size = len(self._unit) + len(text) + sum(len(r) for r in self._records)
        if size > self.config.max_message_bytes:
            return self._too_big(f"message larger than {self.config.max_message_bytes} bytes")
        if term == _ETB:
            self._unit += text
            self._commit_frame_number(fn)
            return self._answer_good_frame()
        unit = bytes(self._unit + text)
        if not unit.endswith((b"\r", b"\n")):
            unit += b"\r"                  # tolerate a record ended by ETX alone
        messages, rest = _complete_messages(self._records + split_message(unit))
        out: list[Action] = [MessageReceived(m) for m in messages]
        self.stats["messages"] += len(messages)
        if messages and self.config.confirm_messages:
            # The ETB text gathered so far stays until accept(): after a NAK only
            # this last frame is resent, and it must complete the same unit.
            self._pending = (fn, rest)
            self.state = self.CONFIRMING
            return out
        self._unit = bytearray()
        self._records = rest
        self._commit_frame_number(fn)
        return out + self._answer_good_frame()

    def _answer_good_frame(self) -> list[Action]:
        if self._interrupt:
            self._interrupt = False
            return [Send(EOT), SetTimer(self.config.frame_timeout)]
        return [Send(ACK), SetTimer(self.config.frame_timeout)]

    def _commit_frame_number(self, fn: int) -> None:
        self._last_fn = fn
        self._expected = next_frame_number(fn)

    def _checksum_ok(self, body: bytes, cks: bytes) -> bool:
        if not all(c in _HEX for c in cks):
            return False
        if self.config.strict_checksum_case:
            return cks == checksum(body)
        return cks.upper() == checksum(body)

    def _nak(self) -> list[Action]:
        self.stats["naks"] += 1
        return [Send(NAK), SetTimer(self.config.frame_timeout)]

    def _too_big(self, reason: str) -> list[Action]:
        """Drop the message, ask the sender to stop (EOT) and ACK until it does."""
        self._reset_transfer()
        self.state = self.DISCARDING
        self.stats["aborts"] += 1
        return [Aborted(reason), Send(EOT), SetTimer(self.config.frame_timeout)]

    def _abort(self, reason: str) -> list[Action]:
        self.stats["aborts"] += 1
        self.state = self.IDLE
        self._reset_transfer()
        return [CancelTimer(), Aborted(reason)]

    def _reset_transfer(self) -> None:
        self._expected = 1
        self._last_fn: int | None = None
        self._unit = bytearray()           # text of ETB frames of the current record
        self._records: list[bytes] = []    # complete records of the current message
        self._drop_frame()

    def _release_held(self) -> list[Action]:
        held = bytes(self._held)
        self._held.clear()
        return self.feed(held) if held else []


def _is_terminator(record: bytes) -> bool:
    return record.lstrip(b"\r\n \t")[:1] == b"L"


def _complete_messages(records: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Cut ``records`` after each L record: (complete messages, leftover records)."""
    messages, start = [], 0
    for i, record in enumerate(records):
        if _is_terminator(record):
            messages.append(b"".join(records[start:i + 1]))
            start = i + 1
    return messages, records[start:]


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """Sender settings.

    ``role``: "computer" yields on ENQ contention and bids again after
    ``contention_wait`` (E1381: at least 20 s [K]); "instrument" keeps
    priority and bids again after ``instrument_contention_wait`` (1 s [K]).
    ``ack_timeout``: seconds to wait for ACK/NAK (E1381: 15 [K]).
    ``max_attempts``: tries per frame; after that many failures the sender
    sends EOT (E1381: 6 [K]).
    ``busy_retry``: seconds to wait after a NAK to the ENQ (10 [K]);
    ``max_bids``: bids before giving up [OWN].
    """
    role: str = "computer"
    ack_timeout: float = 15.0
    max_attempts: int = 6
    busy_retry: float = 10.0
    max_bids: int = 6
    contention_wait: float = 20.0
    instrument_contention_wait: float = 1.0
    max_frame_text: int = MAX_FRAME_TEXT
    retransmit_on_timeout: bool = True
    honour_interrupt: bool = True


class Sender:
    """The sending side of E1381 (instrument simulator, host-query answers)."""

    IDLE = "idle"
    BIDDING = "bidding"          # ENQ sent, waiting for ACK/NAK
    WAITING = "waiting"          # NAK or contention: bid again on timeout
    YIELDED = "yielded"          # lost contention (computer role)
    SENDING = "sending"          # frame sent, waiting for ACK/NAK

    def __init__(self, config: SenderConfig | None = None) -> None:
        self.config = config or SenderConfig()
        if self.config.role not in ("computer", "instrument"):
            raise ValueError("role must be 'computer' or 'instrument'")
        self.state = self.IDLE
        self.stats = {"frames": 0, "retransmissions": 0, "naks": 0, "timeouts": 0,
                      "bids": 0, "ignored_bytes": 0}
        self._frames: list[bytes] = []
        self._index = 0
        self._attempts = 0
        self._bids = 0

    @property
    def idle(self) -> bool:
        return self.state == self.IDLE

    @property
    def current_frame(self) -> int:
        """Index (0-based) of the frame in flight; useful for fault injection."""
        return self._index

    def send(self, messages: list[bytes]) -> list[Action]:
        """Start a transfer of ``messages`` (each a run of CR-terminated records)."""
        if self.state != self.IDLE:
            raise RuntimeError("a transfer is already under way")
        records = [r for m in messages for r in split_message(m)]
        self._frames = encode_records(records, 1, self.config.max_frame_text)
        self._index = 0
        self._bids = 0
        return self._bid()

    def feed(self, data: bytes) -> list[Action]:
        """Process bytes from the peer (ACK, NAK, EOT, ENQ; the rest is ignored)."""
        out: list[Action] = []
        for byte in data:
            out += self._on_byte(byte)
        return out

    def timeout(self) -> list[Action]:
        """The timer fired."""
        if self.state in (self.WAITING, self.YIELDED):
            return self._bid()
        if self.state == self.BIDDING:
            self.stats["timeouts"] += 1
            return self._give_up(f"no answer to ENQ within {self.config.ack_timeout:g} s")
        if self.state == self.SENDING:
            self.stats["timeouts"] += 1
            if not self.config.retransmit_on_timeout:
                return self._give_up(f"no answer to frame within {self.config.ack_timeout:g} s")
            return self._failed_attempt()
        return []

    # -- internals -------------------------------------------------------
    def _on_byte(self, byte: int) -> list[Action]:
        if self.state == self.BIDDING:
            return self._while_bidding(byte)
        if self.state == self.SENDING:
            return self._while_sending(byte)
        self.stats["ignored_bytes"] += 1
        return []

    def _while_bidding(self, byte: int) -> list[Action]:
        if byte == _ACK:
            if not self._frames:
                return self._finish()
            return self._send_current()
        if byte == _NAK:
            if self._bids >= self.config.max_bids:
                self.state = self.IDLE
                return [CancelTimer(), Aborted(f"receiver busy after {self._bids} bids")]
            self.state = self.WAITING
            return [SetTimer(self.config.busy_retry)]
        if byte == _ENQ:
            if self.config.role == "computer":
                self.state = self.YIELDED
                return [SetTimer(self.config.contention_wait), LineYielded()]
            self.state = self.WAITING
            return [SetTimer(self.config.instrument_contention_wait)]
        self.stats["ignored_bytes"] += 1
        return []

    def _while_sending(self, byte: int) -> list[Action]:
        if byte == _ACK or (byte == _EOT and not self.config.honour_interrupt):
            return self._advance()
        if byte == _EOT:
            self._index += 1
            if self._index >= len(self._frames):
                return self._finish()
            unsent = len(self._frames) - self._index
            self.state = self.IDLE
            return [Send(EOT), CancelTimer(), Interrupted(unsent)]
        if byte == _NAK:
            self.stats["naks"] += 1
            return self._failed_attempt()
        self.stats["ignored_bytes"] += 1   # E1381 reads these as NAK; noise is likelier
        return []

    def _advance(self) -> list[Action]:
        self._index += 1
        if self._index >= len(self._frames):
            return self._finish()
        return self._send_current()

    def _failed_attempt(self) -> list[Action]:
        if self._attempts >= self.config.max_attempts:
            return self._give_up(f"frame failed {self._attempts} times")
        self.stats["retransmissions"] += 1
        return self._send_current(retry=True)

    def _send_current(self, retry: bool = False) -> list[Action]:
        self.state = self.SENDING
        self._attempts = self._attempts + 1 if retry else 1
        self.stats["frames"] += 1
        return [Send(self._frames[self._index]), SetTimer(self.config.ack_timeout)]

    def _bid(self) -> list[Action]:
        self.state = self.BIDDING
        self._bids += 1
        self.stats["bids"] += 1
        return [Send(ENQ), SetTimer(self.config.ack_timeout)]

    def _finish(self) -> list[Action]:
        self.state = self.IDLE
        return [Send(EOT), CancelTimer(), TransferComplete()]

    def _give_up(self, reason: str) -> list[Action]:
        self.state = self.IDLE
        return [Send(EOT), CancelTimer(), Aborted(reason)]
