"""How MllpServer closes a connection, over real sockets on 127.0.0.1 (plain and TLS).

A sender may still be sending when the server closes (the rest of an
oversized message, pipelined messages during stop()). Closing a socket with
unread bytes makes the kernel send RST, and the sender may then lose the
ACK/NAK it has not read yet. The server closes with a lingering close
(adapters/closing.py).
"""
from __future__ import annotations

import asyncio
import time

from adapters.mllp import frame

NAK = b"MSA|AR|too large"


async def read_to_end(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[bytes, str]:
    data, ending = bytearray(), "eof"
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            data.extend(chunk)
    except ConnectionResetError:
        ending = "reset"
    return bytes(data), ending


async def send_all_then_read(port: int, payload: bytes, **kw) -> tuple[bytes, str]:
    """A sender that writes everything it has before it reads anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, **kw)
    try:
        writer.write(payload)
        await asyncio.wait_for(writer.drain(), 10)
        return await read_to_end(reader)
    except ConnectionResetError:
        return b"", "reset"
    finally:
        writer.close()


async def test_oversize_nak_reaches_a_sender_still_sending_the_message(start_server):
    server = await start_server(max_message_bytes=100_000, on_oversize=lambda peer: NAK)
    data, ending = await send_all_then_read(
        server.port, frame(b"small") + b"\x0b" + b"x" * 8_000_000)
    assert ending == "eof"
    assert data == frame(b"ACK|small") + frame(NAK)
    assert server.stats()["oversize"] == 1


async def test_oversize_nak_over_tls(start_server, tls_files):
    server = await start_server(max_message_bytes=100_000, on_oversize=lambda peer: NAK,
                                ssl=tls_files.server_context())
    data, ending = await send_all_then_read(
        server.port, frame(b"small") + b"\x0b" + b"x" * 2_000_000,
        ssl=tls_files.client_context(), server_hostname="localhost")
    assert ending == "eof"
    assert data == frame(b"ACK|small") + frame(NAK)


async def test_stop_while_a_sender_streams_keeps_the_acks_and_ends_with_eof(start_server,
                                                                           eventually):
    handled = []

    async def handler(message, peer):
        handled.append(message)
        return b"ACK|" + message[:8]

    server = await start_server(handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        # pipelined messages, then a message that does not end: still arriving at stop()
        writer.write(b"".join(frame(b"m%07d" % i) for i in range(50)) + b"\x0b" + b"x" * 8_000_000)
        draining = asyncio.create_task(asyncio.wait_for(writer.drain(), 10))
        await eventually(lambda: len(handled) == 50)
        stopping = asyncio.create_task(server.stop(grace=3.0))
        try:
            await draining
        except ConnectionError:
            pass
        data, ending = await read_to_end(reader)
    finally:
        writer.close()
    await asyncio.wait_for(stopping, 5)
    assert ending == "eof"
    assert data == b"".join(frame(b"ACK|m%07d" % i) for i in range(50))


async def test_stop_is_not_held_up_by_senders_that_never_close(start_server, connect, tls_files):
    linger = 0.3
    plain = await start_server(close_linger=linger)
    tls = await start_server(close_linger=linger, ssl=tls_files.server_context())
    senders = [await connect(plain.port) for _ in range(3)]
    senders.append(await connect(tls.port, ssl=tls_files.client_context(),
                                 server_hostname="localhost"))
    for s in senders:
        await s.send(frame(b"hello"))
        assert await s.read_frame() == b"ACK|hello"
    # asyncio's TLS client would answer close_notify by itself; one that reads
    # nothing more never does
    senders[-1].writer.transport.pause_reading()
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(plain.stop(grace=10), tls.stop(grace=10)), 10)
    took = time.monotonic() - started
    assert took < linger + 1.0
    assert plain.stats()["connections_current"] == 0 and tls.stats()["connections_current"] == 0


async def test_a_sender_streaming_past_the_linger_is_let_go(start_server):
    linger = 0.3
    server = await start_server(close_linger=linger, idle_timeout=0.1, max_message_bytes=1000)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    started = time.monotonic()
    try:
        while loop.time() < deadline:      # never reads or closes; the message never ends
            writer.write(b"\x0b" + b"x" * 4096)
            await asyncio.wait_for(writer.drain(), 5)
            await asyncio.sleep(0)
            if server.stats()["connections_current"] == 0:
                break
    except ConnectionError:
        pass                                # the server let go: its RST after the bound
    finally:
        writer.close()
    assert server.stats()["oversize"] == 1
    assert server.stats()["connections_current"] == 0
    assert time.monotonic() - started < linger + 1.0
