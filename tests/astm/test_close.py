"""How the ASTM listener closes a connection, over real sockets on 127.0.0.1.

An instrument may still be sending when the gateway closes (stop() during a
transfer). Closing a socket with unread bytes makes the kernel send RST, and
the instrument may then lose the ACKs it has not read yet. The listener
closes with a lingering close (adapters/closing.py).
"""
from __future__ import annotations

import asyncio
import time

from adapters.astm.e1381 import ReceiverConfig, SenderConfig
from adapters.astm.frames import ACK, ENQ, EOT, encode_records, split_message
from adapters.astm.server import AstmServer
from astm_data import records


class Host:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def on_message(self, message: bytes, peer) -> None:
        self.messages.append(message)


async def start(host: Host, **kw) -> AstmServer:
    server = AstmServer(host.on_message, receiver_config=ReceiverConfig(frame_timeout=5.0),
                        sender_config=SenderConfig(role="computer"), **kw)
    await server.start("127.0.0.1", 0)
    return server


async def wait_until(predicate, timeout: float = 5.0) -> None:
    start_ = time.monotonic()
    while not predicate():
        assert time.monotonic() - start_ < timeout, "condition not reached in time"
        await asyncio.sleep(0.005)


async def read_to_end(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[bytes, str]:
    data, ending = bytearray(), "eof"
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            data.extend(chunk)
    except ConnectionResetError:
        ending = "reset"
    return bytes(data), ending


async def test_stop_while_the_instrument_is_sending_keeps_its_acks_and_ends_with_eof():
    # The instrument writes a whole transfer and then a long stream (line noise
    # here) before it reads anything. The gateway stops meanwhile: the ACKs it
    # wrote must still be readable, and the stream must end in FIN, not RST.
    host = Host()
    server = await start(host)
    frames = encode_records(split_message(records("E7")))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(ENQ + b"".join(frames) + EOT + b"\x00" * 8_000_000)
        draining = asyncio.create_task(asyncio.wait_for(writer.drain(), 10))
        await wait_until(lambda: host.messages)            # stored and ACKed, noise still coming
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
    assert data == ACK * (1 + len(frames))
    assert host.messages == [records("E7")]


async def test_stop_is_not_held_up_by_an_instrument_that_never_closes():
    linger, grace = 0.3, 10.0
    host = Host()
    server = await start(host, close_linger=linger)
    peers = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    try:
        for reader, writer in peers:
            writer.write(ENQ)
            assert await asyncio.wait_for(reader.readexactly(1), 5) == ACK
        started = time.monotonic()
        await asyncio.wait_for(server.stop(grace=grace), grace)
        took = time.monotonic() - started
        endings = [(await read_to_end(reader))[1] for reader, _ in peers]
    finally:
        for _, writer in peers:
            writer.close()
    assert took < linger + 1.0
    assert endings == ["eof"] * 3
    assert server.stats()["connections_current"] == 0


async def test_an_instrument_streaming_past_the_linger_is_let_go():
    linger = 0.3
    host = Host()
    server = await start(host, close_linger=linger)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(ENQ)
    assert await asyncio.wait_for(reader.readexactly(1), 5) == ACK

    async def timed_stop() -> float:
        started = time.monotonic()
        await server.stop(grace=10.0)
        return time.monotonic() - started

    stopping = asyncio.create_task(timed_stop())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    try:
        while not stopping.done() and loop.time() < deadline:   # never reads or closes, keeps sending
            writer.write(b"\x00" * 4096)
            await asyncio.wait_for(writer.drain(), 5)
            await asyncio.sleep(0)
    except ConnectionError:
        pass                                # the gateway let go: its RST after the bound
    finally:
        writer.close()
    assert await asyncio.wait_for(stopping, 5) < linger + 1.0
