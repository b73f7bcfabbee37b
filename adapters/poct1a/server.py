"""asyncio TCP server for POCT1-A2 devices: wires sockets to GatewayConversation.

The owner supplies two callbacks (the adapter knows nothing of the core)::

    async def on_observation(message: PoctMessage, peer: str) -> tuple[bool, str | None]
        # OBS.R01 / OBS.R02 -> (accepted, error text for ACK AE)
    async def on_hello(message: PoctMessage, peer: str) -> Sequence[OperatorList | Directive] | None
        # HEL.R01 -> what to push to this device (operator list, lock directive …)

``authorize(peer_host) -> bool``, if given, is asked on every connection; a
refused peer is disconnected before a byte is read.
A callback that raises or overruns ``decision_timeout`` is answered with
ACK AE (``POCT1A-GATEWAY-ERROR``), never with a dropped connection.
Deadlines: ``ack_timeout`` for the device's ACK of a push, ``message_timeout``
from the first byte of a message to its end (slow senders), ``idle_timeout``
between messages. Each ends the conversation with END.R01 (reason TMO).

Every connection, however it ends, is closed with a lingering close
(:func:`adapters.closing.close_gracefully`): FIN after the last message, then
what the device still sends is read and discarded until it closes, for at most
``close_linger`` seconds, so a device that is still sending reads the END
instead of a reset.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

import structlog

from ..closing import DEFAULT_LINGER, close_gracefully
from .build import Directive, OperatorList
from .conversation import (ConversationConfig, ConversationEnded, DuplicateReceived, Event,
                           GatewayConversation, HelloReceived, ObservationReceived, ProtocolError,
                           PushAcknowledged)
from .xml import PoctMessage

log = structlog.get_logger("adapters.poct1a")

GATEWAY_ERROR = "POCT1A-GATEWAY-ERROR"

ObservationCallback = Callable[[PoctMessage, str], Awaitable[tuple[bool, str | None]]]
HelloCallback = Callable[[PoctMessage, str], Awaitable[Sequence[OperatorList | Directive] | None]]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    read_size: int = 65536
    idle_timeout: float = 300.0
    ack_timeout: float = 30.0
    message_timeout: float = 30.0
    decision_timeout: float = 30.0
    write_timeout: float = 30.0
    close_linger: float = DEFAULT_LINGER    # most seconds to wait for the device to close after END
    conversation: ConversationConfig = field(default_factory=ConversationConfig)


class PoctServer:
    """Accepts device connections and runs one conversation per connection."""

    def __init__(self, on_observation: ObservationCallback, *,
                 on_hello: HelloCallback | None = None, config: ServerConfig | None = None,
                 authorize: Callable[[str], bool] | None = None):
        self._on_observation = on_observation
        self._authorize = authorize
        self._on_hello = on_hello
        self.config = config or ServerConfig()
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Future | None = None   # done once stop() begins: wakes every read
        self._live: dict[asyncio.Task, tuple[GatewayConversation, asyncio.StreamWriter]] = {}
        self._stats: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._received: Counter[str] = Counter()

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port)."""
        self._stopping = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._handle, self.config.host, self.config.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        log.info("poct1a.listening", host=host, port=port)
        return host, port

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[:2]

    def stats(self) -> dict:
        """Counters since start: connections, messages by type, errors by code."""
        return {**self._stats, "connections_open": len(self._live),
                "received": dict(self._received), "errors": dict(self._errors)}

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening, send END to every open conversation, close them.

        A connection waiting for its device is closed at once (lingering at
        most ``close_linger`` seconds); one waiting for a callback gets
        ``grace`` seconds, then it is cancelled and closed without lingering.
        """
        if self._server is not None:
            self._server.close()
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)
        for conv, writer in list(self._live.values()):
            if conv.closed:      # ended already: its handler is closing the connection
                continue
            conv.end("gateway shutting down")
            with contextlib.suppress(Exception):
                writer.write(conv.data_to_send())
        tasks = list(self._live)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), grace)
        log.info("poct1a.stopped")

    # one connection --------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer)
        if self._authorize is not None and not self._authorize(peer.rsplit(":", 1)[0]):
            self._stats["connections_refused"] += 1
            log.warning("poct1a.connection_refused", peer=peer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            return
        conv = GatewayConversation(self.config.conversation)
        task = asyncio.current_task()
        self._live[task] = (conv, writer)
        self._stats["connections_total"] += 1
        log.info("poct1a.connection_opened", peer=peer)
        linger = self.config.close_linger
        try:
            await self._converse(conv, reader, writer, peer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            self._record(conv.connection_lost(), peer)
        except asyncio.CancelledError:
            # stop() after its grace. This is the task's outermost frame and
            # asyncio (3.11) reports a cancelled connection task as an error,
            # so the cancellation ends here; no lingering after the grace.
            linger = 0.0
        except Exception as exc:  # a bug of ours: answer in protocol, never a silent drop
            # Type only: a traceback with locals could carry patient data.
            log.error("poct1a.internal_error", peer=peer, error=type(exc).__name__)
            self._errors[GATEWAY_ERROR] += 1
            with contextlib.suppress(Exception):
                conv.end(f"{GATEWAY_ERROR}: internal error")
                writer.write(conv.data_to_send())
        try:
            how = await close_gracefully(reader, writer, linger)
        except asyncio.CancelledError:   # cancelled while lingering: aborted
            how = "cancelled"
        finally:
            self._live.pop(task, None)
        log.info("poct1a.connection_closed", peer=peer, close=how)

    async def _converse(self, conv: GatewayConversation, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, peer: str) -> None:
        partial_since: float | None = None
        ack_wait: tuple[str | None, float] | None = None   # (awaited control id, since)
        while not conv.closed:
            if conv.has_partial_input:
                partial_since = partial_since or time.monotonic()
            else:
                partial_since = None
            if conv.waiting_for != "ack":
                ack_wait = None
            elif ack_wait is None or ack_wait[0] != conv.awaiting_ack:
                ack_wait = (conv.awaiting_ack, time.monotonic())   # other traffic does not restart it
            data = await self._read(reader, self._deadline(conv, partial_since, ack_wait))
            if data is not None:
                self._stats["bytes_in"] += len(data)
                events = conv.receive_data(data) if data else conv.connection_lost()
            elif self._stopping is not None and self._stopping.done():
                events = conv.end("gateway shutting down")
            else:
                events = conv.timeout()
            await self._dispatch(conv, events, peer)
            await self._flush(conv, writer)

    async def _read(self, reader: asyncio.StreamReader, timeout: float) -> bytes | None:
        """The device's next bytes (b"" at EOF); None if ``timeout`` passed or stop() began."""
        if timeout <= 0:     # a deadline already due wins over data waiting (a chatty device)
            return None
        read = asyncio.ensure_future(reader.read(self.config.read_size))
        try:
            await asyncio.wait((read, self._stopping), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()
                await asyncio.wait((read,))   # a read still pending would refuse the next one
        return None if read.cancelled() else read.result()

    def _deadline(self, conv: GatewayConversation, partial_since: float | None,
                  ack_wait: tuple[str | None, float] | None) -> float:
        waiting = conv.waiting_for
        if waiting == "ack" and ack_wait is not None:
            return max(0.0, ack_wait[1] + self.config.ack_timeout - time.monotonic())
        if waiting == "message" and partial_since is not None:
            return max(0.0, partial_since + self.config.message_timeout - time.monotonic())
        return self.config.idle_timeout

    async def _flush(self, conv: GatewayConversation, writer: asyncio.StreamWriter) -> None:
        data = conv.data_to_send()
        if data:
            writer.write(data)
            self._stats["bytes_out"] += len(data)
            await asyncio.wait_for(writer.drain(), self.config.write_timeout)

    async def _dispatch(self, conv: GatewayConversation, events: list[Event], peer: str) -> None:
        self._record(events, peer)
        for event in events:
            if isinstance(event, HelloReceived) and self._on_hello is not None:
                for item in await self._hello_pushes(event.message, peer):
                    conv.push(item)
            elif isinstance(event, ObservationReceived):
                accepted, text, final = await self._decide(event.message, peer)
                conv.acknowledge_observation(event.control_id, accepted, text, final=final)
                self._stats["observations_accepted" if accepted else "observations_rejected"] += 1

    async def _hello_pushes(self, message: PoctMessage, peer: str) -> Sequence:
        try:
            items = list(await asyncio.wait_for(self._on_hello(message, peer),
                                                self.config.decision_timeout) or ())
        except Exception as exc:  # the callback's failure must not end the device's session
            log.error("poct1a.on_hello_failed", peer=peer, error=type(exc).__name__)
            return ()
        pushes = [i for i in items if isinstance(i, (OperatorList, Directive))]
        if len(pushes) != len(items):
            log.error("poct1a.on_hello_bad_push", peer=peer, ignored=len(items) - len(pushes))
        return pushes

    async def _decide(self, message: PoctMessage, peer: str) -> tuple[bool, str | None, bool]:
        """(accepted, error text, final); a gateway failure is not final."""
        try:
            accepted, text = await asyncio.wait_for(self._on_observation(message, peer),
                                                    self.config.decision_timeout)
            return bool(accepted), text, True
        except Exception as exc:
            log.error("poct1a.on_observation_failed", peer=peer, error=type(exc).__name__,
                      control_id=message.control_id)
            return False, f"{GATEWAY_ERROR}: the gateway could not store the message; resend later", False

    def _record(self, events: list[Event], peer: str) -> None:
        for event in events:
            message = getattr(event, "message", None)
            if message is not None:
                self._received[message.msg_type] += 1
                log.debug("poct1a.message_received", peer=peer, msg_type=message.msg_type,
                          control_id=message.control_id)
            if isinstance(event, DuplicateReceived):
                self._stats["duplicates"] += 1
            elif isinstance(event, ProtocolError):
                self._errors[event.code] += 1
                log.warning("poct1a.protocol_error", peer=peer, code=event.code,
                            fatal=event.fatal, control_id=event.control_id)
            elif isinstance(event, PushAcknowledged):
                self._stats["pushes_accepted" if event.accepted else "pushes_rejected"] += 1
            elif isinstance(event, ConversationEnded):
                self._stats[f"ended_by_{event.by}"] += 1


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
