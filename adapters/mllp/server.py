"""The MLLP listener: asyncio streams in, one handler call per message, ACKs out.

Each connection is served by one task that reads, cuts the stream into
messages with :class:`MllpFramer`, awaits the handler for each message in turn
and writes its ACK before the next message's handler runs (MLLP is strict
request/response). Connections run concurrently.

Nothing here logs message content: log lines carry sizes, the peer address,
the bound system and exception type names only. Nothing is logged per message
at info level.

A served connection is closed with a lingering close
(:func:`adapters.closing.close_gracefully`), however it ends (peer EOF, idle
timeout, oversize, handler failure, stop): FIN after the last ACK, then what
the sender still sends is read and discarded until it closes, for at most
``close_linger`` seconds. A plain close with unread bytes (the rest of an
oversized message, the next message) sends RST, and the sender may never read
the ACK or NAK written just before. Over TLS, close_notify takes the place of
the FIN (see adapters/closing.py). Refused connections are closed at once:
nothing was sent to them.
"""
from __future__ import annotations

import asyncio
import inspect
import ssl as ssl_module
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import structlog

from ..closing import DEFAULT_LINGER, close_gracefully
from .errors import MllpFrameTooLarge
from .framing import DEFAULT_MAX_MESSAGE_BYTES, END_BLOCK, START_BLOCK, MllpFramer
from .peer import Peer, subject_string

Handler = Callable[[bytes, Peer], Awaitable[bytes | None]]
Authorize = Callable[[Peer], "str | None | Awaitable[str | None]"]
OnOversize = Callable[[Peer], bytes | None]

READ_CHUNK = 65_536
TLS_HANDSHAKE_TIMEOUT = 15.0


class _Connection:
    """Book-keeping for one accepted socket."""

    __slots__ = ("peer", "writer", "task", "framer", "busy", "served", "messages",
                 "connected_at", "abandoned")

    def __init__(self, peer: Peer, writer: asyncio.StreamWriter, max_message_bytes: int) -> None:
        self.peer = peer
        self.writer = writer
        self.task = asyncio.current_task()
        self.framer = MllpFramer(max_message_bytes)
        self.busy = False      # a message is being handled or its ACK written
        self.served = False    # passed TLS and authorization
        self.messages = 0
        self.connected_at = time.time()
        self.abandoned = False  # cancelled after stop()'s grace: close without lingering


class MllpServer:
    """An MLLP listener that calls ``handler(message, peer)`` for every message.

    The handler returns the ACK (unframed) to send, or ``None`` to send
    nothing. If it raises, the error is logged (type and size only), counted,
    and that connection is closed without an ACK, so the sender retries.

    ``authorize(peer)`` returns the system the peer is bound to, or ``None``
    to refuse the connection; with TLS it sees the verified client
    certificate in ``peer.cert`` / ``peer.tls_subject``. ``on_oversize(peer)``
    may return a negative ACK to send before an oversized message's
    connection is closed.

    ``connections_total`` counts connections that were served (admitted,
    TLS done, authorized); refusals of any kind count in
    ``connections_refused`` instead. ``framing_anomalies`` (FS not followed
    by CR, or a VT inside an open block) is reported besides the documented
    stats keys.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        name: str = "mllp",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float | None = 300.0,
        max_connections: int = 256,
        max_connections_per_peer: int = 64,
        authorize: Authorize | None = None,
        on_oversize: OnOversize | None = None,
        ssl: ssl_module.SSLContext | None = None,
        logger: Any = None,
        close_linger: float = DEFAULT_LINGER,
    ) -> None:
        self.name = name
        self._handler = handler
        self._max_message_bytes = max_message_bytes
        self._idle_timeout = idle_timeout if idle_timeout and idle_timeout > 0 else None
        self._max_connections = max_connections
        self._max_per_peer = max_connections_per_peer
        self._authorize = authorize
        self._on_oversize = on_oversize
        self._ssl = ssl
        self._close_linger = close_linger
        log = logger if logger is not None else structlog.get_logger("labgate.adapters.mllp")
        self._log = log.bind(listener=name) if hasattr(log, "bind") else log
        self._server: asyncio.base_events.Server | None = None
        self._stopping = False
        self._open: set[_Connection] = set()
        self._open_per_host: Counter[str] = Counter()
        self._counts = Counter()
        self._closed_skipped = 0
        self._closed_anomalies = 0

    # ---- lifecycle -------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting. ``port`` 0 picks a free port (see :attr:`port`)."""
        if self._server is not None:
            raise RuntimeError(f"MLLP listener {self.name!r} is already started")
        self._stopping = False
        self._server = await asyncio.start_server(self._on_connect, host, port)
        self._log.info("mllp.listening", host=host, port=self.port, tls=self._ssl is not None)

    @property
    def sockets(self) -> tuple:
        """The listening sockets (empty when not started)."""
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The bound port of the first listening socket."""
        if not self.sockets:
            raise RuntimeError(f"MLLP listener {self.name!r} is not started")
        return self.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting; let messages being handled finish and ACK; then close all.

        Connections waiting for data are closed at once (lingering at most
        ``close_linger`` seconds). A connection whose handler is running
        finishes that message, writes its ACK and is then closed the same way.
        Whatever has not finished after ``grace`` seconds is cancelled and
        closed without lingering.
        """
        if self._server is None:
            return
        self._stopping = True
        self._server.close()
        for conn in list(self._open):
            if not conn.busy:
                conn.task.cancel()   # wakes its read; the connection then closes
        tasks = {conn.task for conn in self._open}
        late: set[asyncio.Task] = set()
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
        self._log.info("mllp.stopped", cancelled_connections=len(late))

    # ---- observation -----------------------------------------------------

    def stats(self) -> dict:
        """Counters since construction, plus the connections open now."""
        c = self._counts
        served = [conn for conn in self._open if conn.served]
        return {
            "connections_current": len(served),
            "connections_total": c["connections_total"],
            "connections_refused": c["connections_refused"],
            "messages_received": c["messages_received"],
            "acks_sent": c["acks_sent"],
            "bytes_skipped": self._closed_skipped + sum(x.framer.skipped_bytes for x in self._open),
            "oversize": c["oversize"],
            "idle_timeouts": c["idle_timeouts"],
            "errors": c["errors"],
            "framing_anomalies": self._closed_anomalies
            + sum(x.framer.framing_anomalies for x in self._open),
        }

    def peers(self) -> list[dict]:
        """The peers connected now (served connections only)."""
        return [
            {
                "host": conn.peer.host,
                "port": conn.peer.port,
                "system": conn.peer.system,
                "tls_subject": conn.peer.tls_subject,
                "connected_at": datetime.fromtimestamp(conn.connected_at, timezone.utc).isoformat(),
                "messages": conn.messages,
            }
            for conn in self._open
            if conn.served
        ]

    # ---- one connection --------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_of(writer)
        refusal = self._admission_refusal(peer.host)
        if refusal:
            self._refuse(writer, peer, refusal)
            return
        conn = _Connection(peer, writer, self._max_message_bytes)
        self._open.add(conn)
        self._open_per_host[peer.host] += 1
        try:
            if await self._admit(conn):
                await self._serve(conn, reader)
        except asyncio.CancelledError:
            # Only stop() or loop shutdown cancels this task. It is the
            # outermost frame of the connection, and asyncio's stream callback
            # (3.11) reports a cancelled task as an error, so the cancellation
            # ends here.
            self._log.debug("mllp.connection_cancelled", **_peer_fields(peer))
        except (ConnectionError, TimeoutError, ssl_module.SSLError):
            self._log.debug("mllp.connection_lost", **_peer_fields(peer))
        except Exception as exc:  # noqa: BLE001 - one connection must never take the listener down
            self._counts["errors"] += 1
            self._log.error("mllp.connection_failed", error=type(exc).__name__, **_peer_fields(peer))
        try:
            how = await close_gracefully(reader, writer,
                                         0.0 if conn.abandoned else self._close_linger)
        except asyncio.CancelledError:   # cancelled while lingering: aborted
            how = "cancelled"
        finally:
            self._forget(conn)
        self._log.debug("mllp.connection_ended", close=how, **_peer_fields(peer))

    def _admission_refusal(self, host: str) -> str | None:
        if self._stopping:
            return "stopping"
        if len(self._open) >= self._max_connections:
            return "max_connections"
        if self._open_per_host[host] >= self._max_per_peer:
            return "max_connections_per_peer"
        return None

    async def _admit(self, conn: _Connection) -> bool:
        """TLS handshake and authorization; False when the connection was refused."""
        peer, writer = conn.peer, conn.writer
        if self._ssl is not None:
            try:
                await writer.start_tls(self._ssl, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                self._refuse(writer, peer, "tls_handshake_failed", error=type(exc).__name__,
                             tls_reason=getattr(exc, "reason", None))
                return False
            peer.cert = writer.get_extra_info("peercert") or None
            peer.tls_subject = subject_string(peer.cert)
        if self._authorize is not None:
            system = self._authorize(peer)
            if inspect.isawaitable(system):  # an async authorize is accepted too
                system = await system
            if system is None:
                self._refuse(writer, peer, "not_authorized", tls_subject=peer.tls_subject)
                return False
            peer.system = system
        conn.served = True
        self._counts["connections_total"] += 1
        self._log.debug("mllp.connection_opened", **_peer_fields(peer))
        return True

    async def _serve(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        """Read, frame and handle until EOF, idle timeout, error or stop."""
        read, feed, idle = reader.read, conn.framer.feed, self._idle_timeout
        while not self._stopping:
            conn.busy = False
            try:
                async with asyncio.timeout(idle):
                    data = await read(READ_CHUNK)
            except TimeoutError:
                self._counts["idle_timeouts"] += 1
                self._log.debug("mllp.idle_timeout", **_peer_fields(conn.peer))
                return
            if not data or self._stopping:
                self._log.debug("mllp.connection_closed", messages=conn.messages,
                                **_peer_fields(conn.peer))
                return
            conn.busy = True
            try:
                messages = feed(data)
            except MllpFrameTooLarge as exc:
                if await self._handle(conn, exc.messages):
                    await self._reject_oversize(conn)
                return
            if messages and not await self._handle(conn, messages):
                return

    async def _handle(self, conn: _Connection, messages: list[bytes]) -> bool:
        """Handle messages in order, writing each ACK; False means close the connection."""
        handler, peer, writer, counts = self._handler, conn.peer, conn.writer, self._counts
        for message in messages:
            counts["messages_received"] += 1
            conn.messages += 1
            try:
                ack = await handler(message, peer)
            except Exception as exc:  # noqa: BLE001 - the sender gets no ACK and retries
                counts["errors"] += 1
                self._log.error("mllp.handler_failed", error=type(exc).__name__,
                                message_bytes=len(message), **_peer_fields(peer))
                return False
            if ack is not None:
                writer.write(START_BLOCK + ack + END_BLOCK)
                await writer.drain()
                counts["acks_sent"] += 1
            if self._stopping:
                return False
        return True

    async def _reject_oversize(self, conn: _Connection) -> None:
        self._counts["oversize"] += 1
        self._log.warning("mllp.message_too_large", limit=self._max_message_bytes,
                          **_peer_fields(conn.peer))
        if self._on_oversize is None:
            return
        try:
            nak = self._on_oversize(conn.peer)
        except Exception as exc:  # noqa: BLE001
            self._counts["errors"] += 1
            self._log.error("mllp.on_oversize_failed", error=type(exc).__name__,
                            **_peer_fields(conn.peer))
            return
        if nak is not None:
            conn.writer.write(START_BLOCK + nak + END_BLOCK)
            await conn.writer.drain()
            self._counts["acks_sent"] += 1

    def _refuse(self, writer: asyncio.StreamWriter, peer: Peer, reason: str, **extra: Any) -> None:
        self._counts["connections_refused"] += 1
        self._log.warning("mllp.connection_refused", reason=reason, **_peer_fields(peer), **extra)
        writer.close()

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        host = conn.peer.host
        self._open_per_host[host] -= 1
        if self._open_per_host[host] <= 0:
            del self._open_per_host[host]
        self._closed_skipped += conn.framer.skipped_bytes
        self._closed_anomalies += conn.framer.framing_anomalies


def _peer_of(writer: asyncio.StreamWriter) -> Peer:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return Peer(host=str(name[0]), port=int(name[1]))
    return Peer(host=str(name or "?"), port=0)


def _peer_fields(peer: Peer) -> dict:
    return {"peer_host": peer.host, "peer_port": peer.port, "system": peer.system}
