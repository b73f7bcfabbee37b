"""The MLLP sender: one connection per destination, kept open and reused."""
from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module

from .errors import MllpConnectionError, MllpTimeout
from .framing import DEFAULT_MAX_MESSAGE_BYTES, MllpFramer, frame

READ_CHUNK = 65_536


class MllpClient:
    """Sends messages to one MLLP destination and returns the replies.

    ``send`` is request/response: it frames and writes one message, then reads
    exactly one framed reply. Calls are serialised, so the client can be
    shared by several tasks. After any failure (timeout, broken connection,
    oversized or malformed reply, cancellation) the connection is dropped and
    the next ``send`` connects anew. A connection the destination closed
    while idle is noticed before writing and replaced, so a stale socket does
    not cost a failed send.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        ack_timeout: float = 30.0,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._ack_timeout = ack_timeout
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._max_message_bytes = max_message_bytes
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer: MllpFramer | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """True while a connection is open and not known to be closed by the peer."""
        return (self._writer is not None and not self._writer.is_closing()
                and self._reader is not None and not self._reader.at_eof())

    async def send(self, message: bytes) -> bytes:
        """Send one message; return the reply without its framing.

        Raises :class:`MllpTimeout` or :class:`MllpConnectionError` (both
        :class:`MllpError`), or :class:`MllpFrameTooLarge` for a reply past
        ``max_message_bytes``.
        """
        async with self._lock:
            try:
                if not self.connected:
                    self._drop()
                    await self._connect()
                return await self._exchange(message)
            except BaseException:
                self._drop()
                raise

    async def close(self) -> None:
        """Close the connection (a later ``send`` would open a new one)."""
        writer = self._writer
        self._drop()
        if writer is not None:
            with contextlib.suppress(OSError, ssl_module.SSLError, asyncio.TimeoutError):
                async with asyncio.timeout(self._connect_timeout):
                    await writer.wait_closed()

    def _drop(self) -> None:
        writer = self._writer
        self._reader = self._writer = self._framer = None
        if writer is not None:
            writer.close()

    async def _connect(self) -> None:
        where = f"{self.host}:{self.port}"
        extra = {"server_hostname": self._server_hostname} if self._ssl and self._server_hostname else {}
        try:
            async with asyncio.timeout(self._connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self._ssl, limit=READ_CHUNK, **extra)
        except TimeoutError:
            raise MllpTimeout(f"connecting to {where} took over {self._connect_timeout}s") from None
        except OSError as exc:
            raise MllpConnectionError(f"cannot connect to {where}: {exc}") from exc
        self._framer = MllpFramer(self._max_message_bytes)

    async def _exchange(self, message: bytes) -> bytes:
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self._ack_timeout):
                self._writer.write(frame(message))
                await self._writer.drain()
                return await self._read_reply()
        except TimeoutError:
            raise MllpTimeout(f"no reply from {where} within {self._ack_timeout}s") from None
        except OSError as exc:
            raise MllpConnectionError(f"connection to {where} failed: {type(exc).__name__}") from exc

    async def _read_reply(self) -> bytes:
        while True:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise MllpConnectionError(
                    f"{self.host}:{self.port} closed the connection before replying")
            replies = self._framer.feed(data)
            if replies:
                # MLLP is strict request/response: anything beyond the first
                # reply answers nothing we sent, so it is not kept.
                return replies[0]


async def send_once(host: str, port: int, message: bytes, *, timeout: float = 30.0,
                    ssl: ssl_module.SSLContext | None = None,
                    server_hostname: str | None = None) -> bytes:
    """Connect, send one message, return the reply, close (for ``labgate send``)."""
    client = MllpClient(host, port, connect_timeout=timeout, ack_timeout=timeout, ssl=ssl,
                        server_hostname=server_hostname)
    try:
        return await client.send(message)
    finally:
        await client.close()
