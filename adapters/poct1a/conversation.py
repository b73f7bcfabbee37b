"""The gateway (data manager) side of a POCT1-A2 conversation, without I/O.

Feed it what the device sent (:meth:`GatewayConversation.receive_data`), a
timeout (:meth:`~GatewayConversation.timeout`) or the end of the transport
(:meth:`~GatewayConversation.connection_lost`); it returns events and queues
bytes to send (:meth:`~GatewayConversation.data_to_send`). It never raises on
anything the device sends: a problem becomes an ``ACK AE`` with an error text
(the conversation goes on) or, when the stream cannot be trusted any more,
``ACK AE``/``ESC.R01`` + ``END.R01`` and ``closed``.

Flow (DOMAIN.md §3.1)::

    device HEL ──► ACK AA                       (anything else first: AE + END)
    device DST ──► ACK AA                       (heartbeat, any time)
    gateway pushes (OPL ► ACK, EOT ► ACK, DTV ► ACK), one at a time,
        released after the first DST is acknowledged (``push_after="status"``)
        or right after HEL (``push_after="hello"``)
    device OBS.R01/R02 ──► ObservationReceived; the owner decides and calls
        acknowledge_observation() ──► ACK AA or ACK AE with the error text
    device EOT ──► ACK AA;  END from either side closes.

Control ids: the device's ACK must name the control id of the gateway's
outstanding message (else ``POCT1A-ACK-WRONG-CONTROL-ID``, fatal). A device
message whose control id was already seen in this conversation is a
duplicate: it is answered with the same acknowledgement, not processed again.
"""
from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Literal

from .build import AckSpelling, Directive, MessageFactory, OperatorList, Outgoing, now_iso
from .stream import StreamSplitter
from .xml import (DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, PoctMessage, PoctXmlError,
                  parse_message, sniff_control_id)

# Rule codes of conversation errors (XML codes live in xml.py).
EXPECTED_HELLO = "POCT1A-EXPECTED-HELLO"
CONTROL_ID_MISSING = "POCT1A-CONTROL-ID-MISSING"
ACK_UNEXPECTED = "POCT1A-ACK-UNEXPECTED"
ACK_WRONG_CONTROL_ID = "POCT1A-ACK-WRONG-CONTROL-ID"
UNSUPPORTED_MESSAGE = "POCT1A-UNSUPPORTED-MESSAGE"
DEVICE_ESCAPE = "POCT1A-DEVICE-ESCAPE"
ACK_TIMEOUT = "POCT1A-ACK-TIMEOUT"
MESSAGE_TIMEOUT = "POCT1A-MESSAGE-TIMEOUT"
IDLE_TIMEOUT = "POCT1A-IDLE-TIMEOUT"
GATEWAY_END = "POCT1A-GATEWAY-END"

OBSERVATION_TYPES = frozenset({"OBS.R01", "OBS.R02"})
# Device messages answered with ACK AA and reported as OtherReceived [K].
_ACKED_ONLY = frozenset({"KPA.R01", "EVS.R01"})


class State(enum.Enum):
    AWAIT_HELLO = "await-hello"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ConversationConfig:
    """Limits and vendor spellings for one conversation."""
    max_message_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    push_after: Literal["hello", "status"] = "status"
    first_control_id: int = 1
    ack_spelling: AckSpelling = field(default_factory=AckSpelling)
    directive_name: str = "DTV.command_cd"
    remembered_control_ids: int = 4096


# Events ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HelloReceived:
    message: PoctMessage


@dataclass(frozen=True, slots=True)
class StatusReceived:
    message: PoctMessage


@dataclass(frozen=True, slots=True)
class ObservationReceived:
    """An OBS.R01/R02 awaiting ``acknowledge_observation(control_id, …)``."""
    message: PoctMessage

    @property
    def control_id(self) -> str:
        return self.message.control_id or ""


@dataclass(frozen=True, slots=True)
class DuplicateReceived:
    message: PoctMessage


@dataclass(frozen=True, slots=True)
class TopicEnded:
    message: PoctMessage


@dataclass(frozen=True, slots=True)
class OtherReceived:
    message: PoctMessage


@dataclass(frozen=True, slots=True)
class PushAcknowledged:
    """The device answered a gateway message (OPL, EOT, DTV)."""
    control_id: str
    msg_type: str
    accepted: bool
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ProtocolError:
    code: str
    text: str
    fatal: bool
    control_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationEnded:
    by: Literal["device", "gateway", "transport"]
    reason: str = ""


Event = (HelloReceived | StatusReceived | ObservationReceived | DuplicateReceived | TopicEnded
         | OtherReceived | PushAcknowledged | ProtocolError | ConversationEnded)


class GatewayConversation:
    """Sans-io state machine for one device connection."""

    def __init__(self, config: ConversationConfig | None = None, *,
                 clock: Callable[[], str] = now_iso):
        self.config = config or ConversationConfig()
        self.state = State.AWAIT_HELLO
        self.hello: PoctMessage | None = None
        self._splitter = StreamSplitter(max_bytes=self.config.max_message_bytes,
                                        max_depth=self.config.max_depth)
        self._factory = MessageFactory(first_control_id=self.config.first_control_id, clock=clock,
                                       ack_spelling=self.config.ack_spelling,
                                       directive_name=self.config.directive_name)
        self._out = bytearray()
        self._queue: deque[Callable[[], Outgoing]] = deque()
        self._outstanding: Outgoing | None = None
        self._gate_open = False
        # device control id -> (accepted, note), or None while a decision is pending
        self._answers: OrderedDict[str, tuple[bool, str | None] | None] = OrderedDict()
        self._events: list[Event] = []

    # public properties ------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def awaiting_ack(self) -> str | None:
        """Control id of the gateway message the device has yet to acknowledge."""
        return self._outstanding.control_id if self._outstanding else None

    @property
    def has_partial_input(self) -> bool:
        return self._splitter.has_partial

    @property
    def pending_decisions(self) -> list[str]:
        return [cid for cid, answer in self._answers.items() if answer is None]

    @property
    def waiting_for(self) -> Literal["ack", "message", "idle", "nothing"]:
        """What a timeout now would be about: which deadline the driver should arm."""
        if self.closed:
            return "nothing"
        if self._outstanding is not None:
            return "ack"
        if self._splitter.has_partial:
            return "message"
        return "idle"

    def data_to_send(self) -> bytes:
        """Bytes queued for the device since the last call."""
        data = bytes(self._out)
        self._out.clear()
        return data

    # inputs -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the device; returns what happened."""
        if self.closed:
            return []
        try:
            frames = self._splitter.feed(data)
        except PoctXmlError as exc:
            self._fatal(exc.code, exc.text, sniff_control_id(self._splitter.failed_head))
            return self._take_events()
        for raw in frames:
            if self.closed:
                break
            self._on_frame(raw)
        self._pump()
        return self._take_events()

    def timeout(self) -> list[Event]:
        """The deadline the driver armed for ``waiting_for`` has passed."""
        kind = self.waiting_for
        if kind == "nothing":
            return []
        code = {"ack": ACK_TIMEOUT, "message": MESSAGE_TIMEOUT}.get(kind, IDLE_TIMEOUT)
        text = {"ack": f"no ACK for control id {self.awaiting_ack}",
                "message": "message not completed in time"}.get(kind, "no message in time")
        self._events.append(ProtocolError(code, text, fatal=kind != "idle"))
        self._terminate("TMO", f"{code}: {text}")
        return self._take_events()

    def connection_lost(self) -> list[Event]:
        """The transport closed; the conversation is over."""
        if self.closed:
            return []
        self.state = State.CLOSED
        self._events.append(ConversationEnded("transport", "connection closed"))
        return self._take_events()

    # gateway commands ----------------------------------------------------------

    def acknowledge_observation(self, control_id: str, accepted: bool,
                                error_text: str | None = None, *, final: bool = True) -> bool:
        """Answer a pending observation with ACK AA, or ACK AE and ``error_text``.

        ``final=False`` is for a temporary failure ("resend later"): the answer
        is not remembered, so a resend of the same control id is decided anew
        instead of getting this AE again as a duplicate.

        Returns False (and sends nothing) when no decision is pending for
        ``control_id`` or the conversation is closed.
        """
        if self.closed or control_id not in self._answers or self._answers[control_id] is not None:
            return False
        note = None if accepted else (error_text or "observation rejected")
        if final:
            self._answers[control_id] = (accepted, note)
        else:
            del self._answers[control_id]
        self._send(self._factory.ack(control_id, accepted=accepted, note=note))
        self._open_gate_after_ack()
        self._pump()
        return True

    def push(self, item: OperatorList | Directive) -> None:
        """Queue an operator list (OPL + EOT) or a directive (DTV) for the device."""
        if self.closed:
            return
        if isinstance(item, OperatorList):
            self._queue.append(lambda: self._factory.operator_list(item.operators))
            self._queue.append(lambda: self._factory.end_of_topic("OPL"))
        elif isinstance(item, Directive):
            self._queue.append(lambda: self._factory.directive(item))
        else:
            raise TypeError(f"cannot push {type(item).__name__}")
        self._pump()

    def end(self, reason: str = "") -> list[Event]:
        """Terminate from the gateway side with END.R01 (reason NRM)."""
        if self.closed:
            return []
        self._terminate("NRM", reason or None)
        return self._take_events()

    # internals ----------------------------------------------------------------

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _send(self, out: Outgoing) -> None:
        self._out += out.data

    def _pump(self) -> None:
        """Send the next queued push when the device may take one."""
        if self.closed or not self._gate_open or self._outstanding or not self._queue:
            return
        self._outstanding = self._queue.popleft()()
        self._send(self._outstanding)

    def _open_gate_after_ack(self) -> None:
        if self.state is State.OPEN and self.config.push_after == "status":
            self._gate_open = True

    def _terminate(self, reason_cd: str, note: str | None) -> None:
        self._send(self._factory.terminate(reason_cd, note))
        self.state = State.CLOSED
        self._events.append(ConversationEnded("gateway", note or reason_cd))

    def _fatal(self, code: str, text: str, device_cid: str | None, *, ack: bool = True) -> None:
        """Answer the offending message (ACK AE, else ESC), then END and close."""
        self._events.append(ProtocolError(code, text, fatal=True, control_id=device_cid))
        note = f"{code}: {text}"
        if device_cid and ack:
            self._send(self._factory.ack(device_cid, accepted=False, note=note))
        else:
            self._send(self._factory.escape(code, text, device_cid))
        self._terminate("ERR", note)

    def _reject(self, msg: PoctMessage, code: str, text: str) -> None:
        """ACK AE a message that is well formed but not acceptable; go on."""
        self._events.append(ProtocolError(code, text, fatal=False, control_id=msg.control_id))
        self._answer(msg.control_id, False, f"{code}: {text}")

    def _answer(self, cid: str, accepted: bool, note: str | None = None) -> None:
        self._remember(cid, (accepted, note))
        self._send(self._factory.ack(cid, accepted=accepted, note=note))

    def _remember(self, cid: str, answer: tuple[bool, str | None] | None) -> None:
        self._answers[cid] = answer
        while len(self._answers) > self.config.remembered_control_ids:
            self._answers.popitem(last=False)

    def _on_frame(self, raw: bytes) -> None:
        try:
            msg = parse_message(raw, max_bytes=self.config.max_message_bytes,
                                max_depth=self.config.max_depth)
        except PoctXmlError as exc:
            self._fatal(exc.code, exc.text, sniff_control_id(raw))
            return
        cid = msg.control_id
        if msg.msg_type == "ACK.R01":
            self._on_ack(msg)
        elif msg.msg_type == "END.R01":
            self.state = State.CLOSED
            self._events.append(ConversationEnded("device", msg.value("TRM.reason_cd") or ""))
        elif msg.msg_type == "ESC.R01":
            self._on_escape(msg)
        elif not cid:
            self._fatal(CONTROL_ID_MISSING, f"{msg.msg_type} has no HDR.control_id", None)
        elif cid in self._answers:
            self._on_duplicate(msg)
        elif self.state is State.AWAIT_HELLO:
            self._on_first(msg)
        else:
            self._on_device_message(msg)

    def _on_first(self, msg: PoctMessage) -> None:
        if msg.msg_type != "HEL.R01":
            self._fatal(EXPECTED_HELLO, f"expected HEL.R01, got {msg.msg_type}", msg.control_id)
            return
        self.state = State.OPEN
        self._hello(msg)
        if self.config.push_after == "hello":
            self._gate_open = True

    def _hello(self, msg: PoctMessage) -> None:
        self.hello = msg
        self._answer(msg.control_id, True)
        self._events.append(HelloReceived(msg))

    def _on_device_message(self, msg: PoctMessage) -> None:
        kind = msg.msg_type
        if kind == "HEL.R01":
            self._hello(msg)
        elif kind in OBSERVATION_TYPES:
            self._remember(msg.control_id, None)
            self._events.append(ObservationReceived(msg))
        elif kind == "DST.R01":
            self._answer(msg.control_id, True)
            self._events.append(StatusReceived(msg))
            self._open_gate_after_ack()
        elif kind == "EOT.R01":
            self._answer(msg.control_id, True)
            self._events.append(TopicEnded(msg))
            self._open_gate_after_ack()
        elif kind in _ACKED_ONLY:
            self._answer(msg.control_id, True)
            self._events.append(OtherReceived(msg))
        else:
            self._reject(msg, UNSUPPORTED_MESSAGE, f"{kind} is not supported by this gateway")

    def _on_duplicate(self, msg: PoctMessage) -> None:
        self._events.append(DuplicateReceived(msg))
        answer = self._answers[msg.control_id]
        if answer is not None:  # still pending: the decision's ACK will answer both
            self._send(self._factory.ack(msg.control_id, accepted=answer[0], note=answer[1]))

    def _on_ack(self, msg: PoctMessage) -> None:
        acked = (msg.value("ACK.ack_control_id") or "").strip()
        if self._outstanding is None:
            self._fatal(ACK_UNEXPECTED, f"ACK for control id {acked!r} but none is awaited",
                        msg.control_id, ack=False)
            return
        if acked != self._outstanding.control_id:
            self._fatal(ACK_WRONG_CONTROL_ID,
                        f"ACK names control id {acked!r}, expected {self._outstanding.control_id!r}",
                        msg.control_id, ack=False)
            return
        type_cd = (msg.value("ACK.type_cd") or "").strip().upper()
        done, self._outstanding = self._outstanding, None
        self._events.append(PushAcknowledged(done.control_id, done.msg_type, type_cd == "AA",
                                             msg.value("ACK.note_txt", "ACK.note")))

    def _on_escape(self, msg: PoctMessage) -> None:
        """The device could not process our message: a negative answer to it."""
        note = msg.value("ESC.note_txt") or msg.value("ESC.esc_cd") or ""
        self._events.append(ProtocolError(DEVICE_ESCAPE, note, fatal=False, control_id=msg.control_id))
        if self._outstanding is not None:
            done, self._outstanding = self._outstanding, None
            self._events.append(PushAcknowledged(done.control_id, done.msg_type, False, note))
