"""Closing a connection without losing the last thing we sent (the lingering close).

Linux answers ``close()`` on a socket that still holds unread received bytes
with RST instead of FIN, and drops whatever of ours is still in the send
queue. The peer, on RST, may discard bytes it has received but not yet read
(asyncio's ``StreamReader`` raises the reset before handing out its
buffer). So a device that is still sending when we close (a trailing ACK,
its next queued message, the rest of an oversized one) can lose the END,
negative ACK or NAK that tells it why.

:func:`close_gracefully` therefore: lets the buffered bytes go out and sends
FIN after them (``write_eof``), keeps reading and discarding until the peer
closes its side or ``linger`` seconds pass, then closes. After the bound, a
peer that is still sending may get RST: a peer that never closes holds a
connection for at most ``linger`` seconds.

TLS: an asyncio TLS transport cannot half-close (``write_eof`` is not
supported), and a bare TCP FIN under TLS would look like a truncation
attack to the peer. There, closing the transport is the half-close: asyncio
flushes our data, sends close_notify and keeps reading (and discarding)
until the peer's close_notify or EOF. We wait for that within the same
bound and abort the connection after it.
"""
from __future__ import annotations

import asyncio

DEFAULT_LINGER = 1.0
_CHUNK = 65_536


async def close_gracefully(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           linger: float = DEFAULT_LINGER) -> str:
    """Half-close, drain the peer for at most ``linger`` seconds, close.

    No other coroutine may be reading from ``reader``. Returns how it went:
    ``"peer-closed"`` (clean), ``"timeout"`` (the bound passed first; the
    connection was closed, or aborted if our data could not be flushed),
    ``"reset"`` (the connection had failed) or ``"closed"`` (it was closed
    already). If cancelled, the connection is aborted and the cancellation
    goes on.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, linger)
    transport = writer.transport
    if transport.is_closing():      # refused, reset, or a TLS peer's close: nothing to wait for
        return "closed"
    try:
        if writer.can_write_eof():
            try:
                writer.write_eof()      # FIN goes out after the bytes still buffered
            except (ConnectionError, OSError):
                outcome = "reset"
            else:
                outcome = await _discard_until_eof(reader, deadline)
        else:
            outcome = "peer-closed"     # TLS: close() below sends close_notify, asyncio drains
        writer.close()
        if not await _closed_within(writer, deadline - loop.time()):
            outcome = "timeout"
            transport.abort()           # unflushed data or no close_notify: give up on it
    except asyncio.CancelledError:
        transport.abort()
        raise
    return outcome


async def _discard_until_eof(reader: asyncio.StreamReader, deadline: float) -> str:
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(_CHUNK), remaining)
        except TimeoutError:
            return "timeout"
        except (ConnectionError, OSError):
            return "reset"
        if not data:
            return "peer-closed"
    return "timeout"


async def _closed_within(writer: asyncio.StreamWriter, seconds: float) -> bool:
    """True once the transport has really closed (its protocol saw connection_lost)."""
    try:
        # shield: on timeout, cancelling wait_closed() would cancel the
        # protocol's own close future, which later waiters share.
        await asyncio.wait_for(asyncio.shield(writer.wait_closed()), max(0.0, seconds))
    except TimeoutError:
        # A plain transport with nothing left to send closes on the next loop
        # turn; only a transport still flushing (or in TLS shutdown) needs abort.
        return writer.transport.get_write_buffer_size() == 0 and writer.can_write_eof()
    except (ConnectionError, OSError):
        pass
    return True
