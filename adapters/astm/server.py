"""The ASTM listener: instruments connect over TCP and send E1381/E1394 messages.

Each connection runs one task around two sans-io machines from
:mod:`adapters.astm.e1381`: a :class:`Receiver` for what the instrument sends
and, when there is something to answer (host-query replies), a
:class:`Sender` that bids with ENQ after the instrument's EOT.

A message (H .. L) is handed to ``on_message(message, peer)`` *before* the
frame that completed it is acknowledged (``confirm_messages``): if the
callback returns, the frame gets ACK; if it raises, the frame gets NAK and the
instrument sends it again (after its retry limit it gives up), so a message
is never acknowledged before the gateway holds it. The callback may return an
:class:`AstmReply` whose messages are sent back once the line is neutral.

Log lines carry the peer address, sizes, counters and reasons; never record
content.

A connection the gateway ends (``stop()``, an internal error) is closed with
a lingering close (:func:`adapters.closing.close_gracefully`): FIN after the
last ACK, then what the instrument still sends is read and discarded until it
closes, for at most ``close_linger`` seconds. A plain close with unread bytes
would send RST, which can cost the instrument the ACK it has not read yet.

Serial-to-TCP bridges
---------------------
Most point-of-care analysers have an RS-232 port; a serial device server
(Moxa NPort, Lantronix UDS/XPort and similar) in "TCP server" or "raw
socket" mode turns it into a TCP connection, usually with the gateway as the
TCP server and the bridge connecting to it ("TCP client" mode on the bridge)
or the reverse. Things to know:

- Use raw mode, not RFC 2217 / telnet mode: telnet mode escapes 0xFF and may
  inject option negotiation bytes (tolerated here as line noise between
  frames, but they corrupt frames they land in, which then get NAKed).
- Bridges pack serial bytes into TCP segments by timer or size ("packing
  length", "force transmit", "delimiter" settings), so a frame may arrive
  split across reads or several frames glued together. The receiver is a
  byte-level state machine, so any split works.
- The serial side is slow (9600 baud ≈ 1 ms per byte; a 240-byte frame takes
  a quarter second) and the bridge adds latency; keep the E1381 timers at
  their standard 15 s / 30 s, not lower.
- Many bridges keep the TCP connection open for weeks with no traffic and
  drop it silently on power loss; the server therefore does not close idle
  connections by default (``idle_timeout=None``) and relies on TCP keepalive
  (enabled on every accepted socket).
- Some bridges reconnect on every transmission; that is fine, each
  connection is independent.
"""
from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

import structlog

from ..closing import DEFAULT_LINGER, close_gracefully
from .actions import (Aborted, Action, CancelTimer, Interrupted, LineYielded, MessageReceived,
                      Send, SetTimer, TransferComplete, TransferEnded)
from .e1381 import Receiver, ReceiverConfig, Sender, SenderConfig

READ_CHUNK = 65_536
# Most bytes read ahead of handling per connection: analysers wait for an ACK
# per frame, so only a hostile peer ever reaches it (memory stays bounded).
READ_AHEAD = 4 * READ_CHUNK


@dataclass(frozen=True, slots=True)
class Peer:
    """The remote end of a connection."""
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class AstmReply:
    """What to send back: E1394 messages (CR-terminated records each), sent
    in one transfer after the instrument's EOT."""
    messages: tuple[bytes, ...] | list[bytes] = field(default_factory=tuple)


OnMessage = Callable[[bytes, Peer], Awaitable[AstmReply | None]]


class _Timers:
    """One asyncio timer per machine name, delivering expiries to a queue."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self._queue = queue
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._generation = Counter()

    def arm(self, name: str, seconds: float) -> None:
        self.cancel(name)
        gen = self._generation[name]
        loop = asyncio.get_running_loop()
        self._handles[name] = loop.call_later(
            max(0.0, seconds), self._queue.put_nowait, ("timeout", name, gen))

    def cancel(self, name: str) -> None:
        self._generation[name] += 1
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def current(self, name: str, gen: int) -> bool:
        return self._generation[name] == gen and name in self._handles

    def fired(self, name: str) -> None:
        self._handles.pop(name, None)

    def cancel_all(self) -> None:
        for name in list(self._handles):
            self.cancel(name)


class _Connection:
    """One instrument connection: routes bytes and timer expiries to the machines."""

    def __init__(self, server: "AstmServer", reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: Peer) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.events: asyncio.Queue = asyncio.Queue()
        self.timers = _Timers(self.events)
        self.receiver = Receiver(server.receiver_config)
        self.sender: Sender | None = None
        self.replies: list[bytes] = []
        self.bid_when_idle = False
        self.busy = False
        self.task = asyncio.current_task()
        self.queued = 0                     # bytes read but not yet handled
        self.room = asyncio.Event()         # set while queued < READ_AHEAD
        self.room.set()
        self.abandoned = False              # cancelled after stop()'s grace: close without lingering

    async def run(self) -> None:
        reader_task = asyncio.create_task(self._read_loop())
        try:
            while True:
                event = await self.events.get()
                if event[0] == "eof":
                    break
                self.busy = True
                if event[0] == "data":
                    self.queued -= len(event[1])
                    if self.queued < READ_AHEAD:
                        self.room.set()
                    await self._on_data(event[1])
                else:
                    await self._on_timeout(event[1], event[2])
                await self._maybe_send_replies()
                await self.writer.drain()
                self.busy = False
                if self.server.stopping:
                    break
        finally:
            reader_task.cancel()
            self.timers.cancel_all()
            await asyncio.wait((reader_task,))   # the closing linger reads next
            if not self.receiver.idle:
                self.server.counts["aborts"] += 1
                self.server.log.info("astm.connection_lost_mid_transfer", **self._where())

    async def _read_loop(self) -> None:
        try:
            while True:
                await self.room.wait()      # a peer that streams ahead waits for us
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                self.server.counts["bytes_in"] += len(data)
                self.queued += len(data)
                counts = self.server.counts
                counts["read_ahead_peak"] = max(counts.get("read_ahead_peak", 0), self.queued)
                if self.queued >= READ_AHEAD:
                    self.room.clear()
                self.events.put_nowait(("data", data))
        except (ConnectionError, OSError):
            pass
        finally:
            self.events.put_nowait(("eof",))

    # -- routing ---------------------------------------------------------
    def _sender_listening(self) -> bool:
        return self.sender is not None and self.sender.state in (Sender.BIDDING, Sender.SENDING)

    async def _on_data(self, data: bytes) -> None:
        if not self._sender_listening():
            await self._apply("receiver", self.receiver.feed(data))
            return
        for i in range(len(data)):
            actions = self.sender.feed(data[i:i + 1])
            yielded = any(isinstance(a, LineYielded) for a in actions)
            await self._apply("sender", actions)
            if yielded:                      # the instrument's ENQ is for the receiver
                await self._apply("receiver", self.receiver.feed(data[i:]))
                return
            if not self._sender_listening():
                if data[i + 1:]:
                    await self._apply("receiver", self.receiver.feed(data[i + 1:]))
                return

    async def _on_timeout(self, name: str, gen: int) -> None:
        if not self.timers.current(name, gen):
            return                           # stale: re-armed or cancelled since
        self.timers.fired(name)
        if name == "receiver":
            await self._apply("receiver", self.receiver.timeout())
        elif self.sender is not None:
            if self.sender.state in (Sender.WAITING, Sender.YIELDED) and not self.receiver.idle:
                self.bid_when_idle = True    # bid once the instrument's transfer is over
                return
            await self._apply("sender", self.sender.timeout())

    async def _maybe_send_replies(self) -> None:
        if not self.receiver.idle:
            return
        if self.bid_when_idle and self.sender is not None:
            self.bid_when_idle = False
            await self._apply("sender", self.sender.timeout())
        elif self.replies and (self.sender is None or self.sender.idle):
            self.sender = self.sender or Sender(self.server.sender_config)
            messages, self.replies = self.replies, []
            self.server.counts["reply_transfers"] += 1
            await self._apply("sender", self.sender.send(messages))

    # -- actions ---------------------------------------------------------
    async def _apply(self, name: str, actions: list[Action]) -> None:
        results: list[bool] = []
        for action in actions:
            if isinstance(action, Send):
                self.writer.write(action.data)
            elif isinstance(action, SetTimer):
                self.timers.arm(name, action.seconds)
            elif isinstance(action, CancelTimer):
                self.timers.cancel(name)
            elif isinstance(action, MessageReceived):
                results.append(await self._deliver(action))
            else:
                self._note(action)
        if results and self.receiver.state == Receiver.CONFIRMING:
            follow = self.receiver.accept() if all(results) else self.receiver.reject()
            await self._apply("receiver", follow)

    async def _deliver(self, received: MessageReceived) -> bool:
        counts = self.server.counts
        try:
            reply = await self.server.on_message(received.data, self.peer)
        except Exception as exc:    # the callback's failure must not kill the link
            counts["messages_failed"] += 1
            self.server.log.warning("astm.on_message_failed", error=type(exc).__name__,
                                    size=len(received.data), **self._where())
            return False
        counts["messages"] += 1
        if not received.complete:
            counts["messages_unterminated"] += 1
        if reply is not None and reply.messages:
            self.replies.extend(reply.messages)
        return True

    def _note(self, action: Action) -> None:
        counts, log = self.server.counts, self.server.log
        if isinstance(action, Aborted):
            counts["aborts"] += 1
            log.info("astm.transfer_aborted", reason=action.reason, **self._where())
        elif isinstance(action, TransferEnded):
            counts["transfers"] += 1
        elif isinstance(action, TransferComplete):
            counts["replies_sent"] += 1
        elif isinstance(action, Interrupted):
            counts["replies_interrupted"] += 1
            log.info("astm.reply_interrupted", unsent_frames=action.unsent_frames, **self._where())
        elif isinstance(action, LineYielded):
            counts["contentions"] += 1

    def _where(self) -> dict:
        return {"peer_host": self.peer.host, "peer_port": self.peer.port,
                "listener": self.server.name}


class AstmServer:
    """An ASTM E1381 listener calling ``on_message(message, peer)`` per message.

    ``receiver_config`` and ``sender_config`` set the E1381 timers and
    limits (shorten them in tests). ``confirm_messages`` is forced on: a
    message is acknowledged only after ``on_message`` returns.
    ``authorize(peer_host) -> bool``, if given, is asked on every connection;
    a refused peer is disconnected before a byte is read.
    """

    def __init__(self, on_message: OnMessage, *, name: str = "astm",
                 receiver_config: ReceiverConfig | None = None,
                 sender_config: SenderConfig | None = None,
                 max_connections: int = 256, logger: Any = None,
                 authorize: Callable[[str], bool] | None = None,
                 close_linger: float = DEFAULT_LINGER) -> None:
        self.name = name
        self.authorize = authorize
        self.on_message = on_message
        self.receiver_config = replace(receiver_config or ReceiverConfig(),
                                       confirm_messages=True)
        self.sender_config = sender_config or SenderConfig(role="computer")
        self.max_connections = max_connections
        self.close_linger = close_linger
        self.stopping = False
        self.log = logger if logger is not None else structlog.get_logger("labgate.adapters.astm")
        self.counts: Counter = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._open: set[_Connection] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and accept. ``port`` 0 picks a free port (see :attr:`port`)."""
        if self._server is not None:
            raise RuntimeError(f"ASTM listener {self.name!r} is already started")
        self.stopping = False
        self._server = await asyncio.start_server(self._on_connect, host, port)
        self.log.info("astm.listening", host=host, port=self.port, listener=self.name)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"ASTM listener {self.name!r} is not started")
        return self._server.sockets[0].getsockname()[1]

    def stats(self) -> dict:
        """Counters since construction, plus the connections open now."""
        c = self.counts
        keys = ("connections_total", "connections_refused", "bytes_in", "messages",
                "messages_failed", "messages_unterminated", "transfers", "aborts",
                "reply_transfers", "replies_sent", "replies_interrupted", "contentions")
        out = {k: c[k] for k in keys}
        out["connections_current"] = len(self._open)
        out["read_ahead_peak"] = c.get("read_ahead_peak", 0)   # bytes queued on one connection, at most
        return out

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting and close every connection.

        Idle connections are closed at once (lingering at most
        ``close_linger`` seconds); a connection in the middle of ``on_message``
        finishes it and is then closed the same way, or is cancelled and
        closed without lingering if it has not after ``grace`` seconds.
        """
        if self._server is None:
            return
        self.stopping = True
        self._server.close()
        for conn in list(self._open):
            if not conn.busy:
                conn.task.cancel()
        tasks = {conn.task for conn in self._open}
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for conn in list(self._open):
                if conn.task in late:
                    conn.abandoned = True
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self._server.wait_closed()
        self._server = None
        self.log.info("astm.stopped", listener=self.name)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = (writer.get_extra_info("peername") or ("?", 0))[:2]
        peer = Peer(str(host), int(port))
        if len(self._open) >= self.max_connections:
            self.counts["connections_refused"] += 1
            self.log.warning("astm.connection_refused", reason="max_connections",
                             peer_host=peer.host, listener=self.name)
            writer.close()
            return
        if self.authorize is not None and not self.authorize(peer.host):
            self.counts["connections_refused"] += 1
            self.log.warning("astm.connection_refused", reason="not_allowed",
                             peer_host=peer.host, listener=self.name)
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn = _Connection(self, reader, writer, peer)
        self._open.add(conn)
        self.counts["connections_total"] += 1
        started = time.monotonic()
        try:
            await conn.run()
        except asyncio.CancelledError:
            pass
        except Exception as exc:     # never let one connection take the listener down
            self.log.error("astm.connection_failed", error=type(exc).__name__,
                           peer_host=peer.host, listener=self.name)
        try:
            how = await close_gracefully(reader, writer,
                                         0.0 if conn.abandoned else self.close_linger)
        except asyncio.CancelledError:   # cancelled while lingering: aborted
            how = "cancelled"
        finally:
            self._open.discard(conn)
        self.log.debug("astm.connection_closed", peer_host=peer.host, listener=self.name,
                       seconds=round(time.monotonic() - started, 3), close=how)
