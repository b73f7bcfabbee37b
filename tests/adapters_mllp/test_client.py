"""MllpClient and send_once against real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import socket

import pytest

from adapters.mllp import (MllpClient, MllpConnectionError, MllpError, MllpFrameTooLarge,
                           MllpServer, MllpTimeout, frame, send_once)


@pytest.fixture
async def raw_server():
    """``await raw_server(callback)`` -> port of a plain asyncio server running ``callback(reader, writer)``."""
    servers, writers = [], []

    async def start(callback) -> int:
        async def guarded(reader, writer):
            writers.append(writer)
            try:
                await callback(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass   # the client went away: expected in these tests
            finally:
                writer.close()

        server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
    for writer in writers:
        writer.close()
    await asyncio.sleep(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_send_returns_the_reply_and_reuses_the_connection(start_server):
    server = await start_server()
    client = MllpClient("127.0.0.1", server.port)
    assert await client.send(b"one") == b"ACK|one"
    assert await client.send(b"two") == b"ACK|two"
    assert client.connected
    assert server.stats()["connections_total"] == 1
    await client.close()
    assert not client.connected


async def test_reconnects_after_the_server_restarts(start_server):
    server = await start_server()
    port = server.port
    client = MllpClient("127.0.0.1", port, connect_timeout=1.0)
    assert await client.send(b"before") == b"ACK|before"
    await server.stop()
    with pytest.raises(MllpConnectionError):
        await client.send(b"while down")     # nobody listens
    await server.start("127.0.0.1", port)
    assert await client.send(b"after") == b"ACK|after"
    await server.stop()
    await server.start("127.0.0.1", port)
    assert await client.send(b"again") == b"ACK|again"   # stale socket noticed, no failed send
    await client.close()


async def test_times_out_on_a_server_that_never_answers(raw_server, start_server):
    got = []

    async def silent(reader, writer):
        got.append(await reader.read(100))
        await reader.read()   # hold the connection, answer nothing

    port = await raw_server(silent)
    client = MllpClient("127.0.0.1", port, ack_timeout=0.2)
    with pytest.raises(MllpTimeout) as caught:
        await client.send(b"hello")
    assert isinstance(caught.value, MllpError)
    assert got == [frame(b"hello")]
    assert not client.connected            # dropped: the next send reconnects
    await client.close()


async def test_reply_split_into_pieces_with_junk(raw_server):
    async def dribbling(reader, writer):
        while True:
            data = await reader.readuntil(b"\x1c\r")
            reply = b"\r\n" + frame(b"MSA|AA|" + data[1:-2])
            for i in range(len(reply)):
                writer.write(reply[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0)

    port = await raw_server(dribbling)
    client = MllpClient("127.0.0.1", port)
    assert await client.send(b"m1") == b"MSA|AA|m1"
    assert await client.send(b"m2") == b"MSA|AA|m2"
    await client.close()


async def test_reply_without_trailing_cr(raw_server):
    async def sloppy(reader, writer):
        while True:
            await reader.readuntil(b"\x1c\r")
            writer.write(b"\x0bACK\x1c")
            await writer.drain()

    port = await raw_server(sloppy)
    client = MllpClient("127.0.0.1", port, ack_timeout=2.0)
    assert await client.send(b"a") == b"ACK"
    assert await client.send(b"b") == b"ACK"
    await client.close()


async def test_server_closing_without_reply_is_a_connection_error(raw_server):
    async def rude(reader, writer):
        await reader.read(100)
        writer.close()

    port = await raw_server(rude)
    client = MllpClient("127.0.0.1", port)
    with pytest.raises(MllpConnectionError):
        await client.send(b"x")
    assert not client.connected


async def test_connection_refused():
    client = MllpClient("127.0.0.1", free_port(), connect_timeout=1.0)
    with pytest.raises(MllpConnectionError):
        await client.send(b"x")


async def test_oversized_reply_is_refused(raw_server):
    async def flood(reader, writer):
        await reader.read(100)
        writer.write(b"\x0b" + b"z" * 5000)
        await writer.drain()
        await reader.read()

    port = await raw_server(flood)
    client = MllpClient("127.0.0.1", port, max_message_bytes=1000)
    with pytest.raises(MllpFrameTooLarge):
        await client.send(b"x")
    assert not client.connected


async def test_concurrent_sends_on_one_client_are_serialised(start_server):
    server = await start_server()
    client = MllpClient("127.0.0.1", server.port)
    replies = await asyncio.gather(*(client.send(b"m%d" % i) for i in range(30)))
    assert replies == [b"ACK|m%d" % i for i in range(30)]
    await client.close()


async def test_cancelled_send_drops_the_connection(start_server):
    release = asyncio.Event()

    async def slow(message, peer):
        if message == b"slow":
            await release.wait()
        return b"ACK|" + message

    server = await start_server(slow)
    client = MllpClient("127.0.0.1", server.port)
    task = asyncio.create_task(client.send(b"slow"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not client.connected
    release.set()
    assert await client.send(b"next") == b"ACK|next"   # a late reply cannot be mistaken for this one
    await client.close()


async def test_send_once(start_server):
    server = await start_server()
    assert await send_once("127.0.0.1", server.port, b"cli", timeout=5.0) == b"ACK|cli"
    with pytest.raises(MllpConnectionError):
        await send_once("127.0.0.1", free_port(), b"cli", timeout=1.0)


async def test_client_against_server_handler_without_ack_times_out(start_server):
    async def mute(message, peer):
        return None

    server: MllpServer = await start_server(mute)
    client = MllpClient("127.0.0.1", server.port, ack_timeout=0.2)
    with pytest.raises(MllpTimeout):
        await client.send(b"x")
    await client.close()
