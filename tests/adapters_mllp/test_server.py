"""MllpServer over real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import random

import pytest
from structlog.testing import capture_logs

from adapters.mllp import MllpClient, Peer, frame

MSG = b"MSH|^~\\&|LAB|X|GW|Y|20240101120000||ORU^R01|1|P|2.5.1\rPID|1||01010112345^^^NO-FNR\r"


async def test_several_messages_on_one_connection_acked_in_order(start_server, connect):
    server = await start_server()
    sender = await connect(server.port)
    await sender.send(frame(b"one") + frame(b"two") + frame(b"three"))
    assert [await sender.read_frame() for _ in range(3)] == [b"ACK|one", b"ACK|two", b"ACK|three"]
    await sender.send(frame(b"four"))
    assert await sender.read_frame() == b"ACK|four"
    stats = server.stats()
    assert stats["messages_received"] == 4 and stats["acks_sent"] == 4
    assert stats["connections_current"] == 1 and stats["connections_total"] == 1


async def test_frame_sent_one_byte_at_a_time(start_server, connect):
    server = await start_server()
    sender = await connect(server.port)
    for byte in frame(MSG):
        await sender.send(bytes([byte]))
    assert await sender.read_frame() == b"ACK|" + MSG


async def test_handler_sees_the_peer(start_server, connect):
    seen: list[Peer] = []

    async def handler(message, peer):
        seen.append(peer)
        return b"ok"

    server = await start_server(handler)
    sender = await connect(server.port)
    await sender.send(frame(MSG))
    await sender.read_frame()
    local_port = sender.writer.get_extra_info("sockname")[1]
    assert seen[0].host == "127.0.0.1" and seen[0].port == local_port
    assert seen[0].system is None and seen[0].cert is None
    [info] = server.peers()
    assert info["host"] == "127.0.0.1" and info["port"] == local_port and info["messages"] == 1
    assert info["connected_at"].endswith("+00:00")


async def test_junk_before_vt_is_skipped_and_counted(start_server, connect, eventually):
    server = await start_server()
    sender = await connect(server.port)
    await sender.send(b"GET / HTTP/1.0\r\n\r\n" + frame(b"a"))
    assert await sender.read_frame() == b"ACK|a"
    assert server.stats()["bytes_skipped"] == 18
    sender.close()
    await eventually(lambda: server.stats()["connections_current"] == 0)
    assert server.stats()["bytes_skipped"] == 18  # kept after the connection is gone


async def test_fs_without_cr_is_accepted_and_counted(start_server, connect):
    server = await start_server()
    sender = await connect(server.port)
    await sender.send(b"\x0bfirst\x1c")            # no CR, and the sender waits
    assert await sender.read_frame() == b"ACK|first"
    await sender.send(b"\x0bsecond\x1c\r")
    assert await sender.read_frame() == b"ACK|second"
    assert server.stats()["framing_anomalies"] == 1


async def test_handler_returning_none_sends_nothing(start_server, connect):
    async def handler(message, peer):
        return None if message == b"quiet" else b"ACK|" + message

    server = await start_server(handler)
    sender = await connect(server.port)
    await sender.send(frame(b"quiet") + frame(b"loud"))
    assert await sender.read_frame() == b"ACK|loud"
    assert server.stats()["acks_sent"] == 1 and server.stats()["messages_received"] == 2


async def test_oversize_sends_nak_then_closes(start_server, connect):
    server = await start_server(max_message_bytes=100,
                                on_oversize=lambda peer: b"MSA|AR|too large")
    sender = await connect(server.port)
    await sender.send(frame(b"small") + frame(b"x" * 200) + frame(b"never handled"))
    rest = await sender.wait_closed_by_server()
    assert rest == frame(b"ACK|small") + frame(b"MSA|AR|too large")
    stats = server.stats()
    assert stats["oversize"] == 1 and stats["messages_received"] == 1


async def test_oversize_without_callback_just_closes(start_server, connect):
    server = await start_server(max_message_bytes=10)
    sender = await connect(server.port)
    await sender.send(b"\x0b" + b"y" * 11)
    assert await sender.wait_closed_by_server() == b""
    assert server.stats()["oversize"] == 1


async def test_idle_timeout_closes_a_silent_connection(start_server, connect, eventually):
    server = await start_server(idle_timeout=0.2)
    sender = await connect(server.port)
    await sender.send(frame(b"a"))
    assert await sender.read_frame() == b"ACK|a"
    assert await sender.wait_closed_by_server() == b""
    await eventually(lambda: server.stats()["idle_timeouts"] == 1)
    sender.close()        # the server lingers (FIN sent) until the sender closes too
    await eventually(lambda: server.stats()["connections_current"] == 0)


async def test_fifty_connections_twenty_messages_each_acked_in_order(start_server, connect):
    in_handler: dict[int, int] = {}
    overlap = []

    async def handler(message, peer):
        in_handler[peer.port] = in_handler.get(peer.port, 0) + 1
        overlap.append(in_handler[peer.port])
        await asyncio.sleep(random.random() / 1000)   # interleave the connections
        in_handler[peer.port] -= 1
        return b"ACK|" + message

    server = await start_server(handler)

    async def one_connection(c: int) -> list[bytes]:
        sender = await connect(server.port)
        expected = [b"C%d-M%d" % (c, i) for i in range(20)]
        await sender.send(b"".join(frame(m) for m in expected[:10]))   # pipelined
        got = [await sender.read_frame() for _ in range(10)]
        for m in expected[10:]:                                       # one by one
            await sender.send(frame(m))
            got.append(await sender.read_frame())
        return got == [b"ACK|" + m for m in expected]

    results = await asyncio.gather(*(one_connection(c) for c in range(50)))
    assert all(results)
    assert max(overlap) == 1   # never two messages of one connection in the handler at once
    stats = server.stats()
    assert stats["messages_received"] == 1000 and stats["acks_sent"] == 1000
    assert stats["connections_total"] == 50


async def test_handler_exception_closes_only_that_connection(start_server, connect, eventually):
    async def handler(message, peer):
        if message.startswith(b"BOOM"):
            raise ValueError("bad value 01010112345 in " + message.decode())
        return b"ACK|" + message

    server = await start_server(handler)
    good, bad = await connect(server.port), await connect(server.port)
    await good.send(frame(b"before"))
    assert await good.read_frame() == b"ACK|before"
    with capture_logs() as logs:
        await bad.send(frame(b"BOOM" + MSG) + frame(b"after boom"))
        assert await bad.wait_closed_by_server() == b""   # no ACK: the sender retries
    await good.send(frame(b"after"))
    assert await good.read_frame() == b"ACK|after"
    again = await connect(server.port)
    await again.send(frame(b"new"))
    assert await again.read_frame() == b"ACK|new"
    assert server.stats()["errors"] == 1
    [event] = [e for e in logs if e["event"] == "mllp.handler_failed"]
    assert event["error"] == "ValueError" and event["message_bytes"] == len(MSG) + 4
    assert event["log_level"] == "error"
    for entry in logs:       # neither content nor the exception text is logged
        text = repr(entry)
        assert "01010112345" not in text and "PID" not in text and "bad value" not in text


async def test_authorize_refuses_a_peer(start_server, connect, eventually):
    calls = []

    def authorize(peer: Peer) -> str | None:
        calls.append(peer.host)
        return None

    server = await start_server(authorize=authorize)
    with capture_logs() as logs:
        sender = await connect(server.port)
        await sender.send(frame(b"hello"))
        assert await sender.wait_closed_by_server() == b""
    assert calls == ["127.0.0.1"]
    stats = server.stats()
    assert stats["connections_refused"] == 1 and stats["messages_received"] == 0
    assert stats["connections_total"] == 0
    assert any(e["event"] == "mllp.connection_refused" and e["reason"] == "not_authorized"
               for e in logs)


async def test_authorize_binds_the_system(start_server, connect):
    systems = []

    async def handler(message, peer):
        systems.append(peer.system)
        return b"ok"

    server = await start_server(handler, authorize=lambda peer: "lis-east")
    sender = await connect(server.port)
    await sender.send(frame(b"m"))
    assert await sender.read_frame() == b"ok"
    assert systems == ["lis-east"]
    assert server.peers()[0]["system"] == "lis-east"


async def test_async_authorize_and_authorize_that_raises(start_server, connect, eventually):
    async def allow(peer):
        return "ehr-1"

    server = await start_server(authorize=allow)
    sender = await connect(server.port)
    await sender.send(frame(b"m"))
    assert await sender.read_frame() == b"ACK|m"
    assert server.peers()[0]["system"] == "ehr-1"

    def broken(peer):
        raise KeyError("config")

    server = await start_server(authorize=broken)
    sender = await connect(server.port)
    assert await sender.wait_closed_by_server() == b""
    await eventually(lambda: server.stats()["errors"] == 1)
    assert server.stats()["connections_total"] == 0


async def test_connection_limits(start_server, connect, eventually):
    server = await start_server(max_connections=3, max_connections_per_peer=2)
    first, second = await connect(server.port), await connect(server.port)
    for s in (first, second):
        await s.send(frame(b"x"))
        await s.read_frame()
    third = await connect(server.port)
    assert await third.wait_closed_by_server() == b""
    assert server.stats()["connections_refused"] == 1
    first.close()
    await eventually(lambda: server.stats()["connections_current"] == 1)
    fourth = await connect(server.port)
    await fourth.send(frame(b"y"))
    assert await fourth.read_frame() == b"ACK|y"


async def test_stop_lets_an_inflight_handler_finish(start_server, connect, eventually):
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(message, peer):
        if message == b"slow":
            started.set()
            await release.wait()
        return b"ACK|" + message

    server = await start_server(handler)
    port = server.port
    busy, idle = await connect(port), await connect(port)
    await idle.send(frame(b"hi"))
    assert await idle.read_frame() == b"ACK|hi"
    await busy.send(frame(b"slow") + frame(b"queued behind slow"))
    await started.wait()
    stopping = asyncio.create_task(server.stop(grace=5.0))
    assert await idle.wait_closed_by_server() == b""        # idle one goes at once
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # no longer accepting
    assert not stopping.done()
    release.set()
    assert await busy.read_frame() == b"ACK|slow"            # in-flight ACK is written
    assert await busy.wait_closed_by_server() == b""         # then closed; the queued one waits for a retry
    await stopping
    assert server.stats()["messages_received"] == 2


async def test_stop_cancels_a_handler_stuck_past_grace(start_server, connect):
    started = asyncio.Event()

    async def handler(message, peer):
        started.set()
        await asyncio.Event().wait()

    server = await start_server(handler)
    sender = await connect(server.port)
    await sender.send(frame(b"stuck"))
    await started.wait()
    await server.stop(grace=0.1)
    assert await sender.wait_closed_by_server() == b""
    assert server.stats()["connections_current"] == 0


async def test_server_restarts_after_stop(start_server):
    server = await start_server()
    port = server.port
    await server.stop()
    await server.stop()   # stopping twice is harmless
    assert server.sockets == ()
    await server.start("127.0.0.1", port)
    client = MllpClient("127.0.0.1", port)
    assert await client.send(b"m") == b"ACK|m"
    await client.close()


async def test_garbage_stream_does_not_hurt_the_server(start_server, connect):
    server = await start_server(max_message_bytes=1000)
    rng = random.Random(7)
    for _ in range(5):
        sender = await connect(server.port)
        await sender.send(bytes(rng.randrange(256) for _ in range(5000)))
        sender.close()
    sender = await connect(server.port)
    await sender.send(frame(MSG))
    assert await sender.read_frame() == b"ACK|" + MSG
    assert server.stats()["errors"] == 0


async def test_peer_that_vanishes_before_its_ack(start_server, connect, eventually):
    release = asyncio.Event()

    async def handler(message, peer):
        await release.wait()
        return b"ACK|" + message

    server = await start_server(handler)
    sender = await connect(server.port)
    await sender.send(frame(b"m"))
    await eventually(lambda: server.stats()["messages_received"] == 1)
    sender.writer.transport.abort()
    release.set()
    await eventually(lambda: server.stats()["connections_current"] == 0)
    assert server.stats()["errors"] == 0
