"""End to end over real sockets: the simulator against the server, with every fault."""
from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from adapters.astm.e1381 import ReceiverConfig, SenderConfig
from adapters.astm.e1394 import build_records, parse_message
from adapters.astm.frames import ACK, ENQ, EOT, NAK, encode_records, split_message
from adapters.astm.scenarios import crp_patient, crp_qc, host_query
from adapters.astm.server import AstmReply, AstmServer
from adapters.astm.simulator import FAULTS, run_simulation
from mappings.astm.host_query import answer_records, query_from_record
from astm_data import records

NOW = datetime(2025, 3, 14, 9, 31, 0)
OPEN = [{"specimen_id": "LID0004712", "patient_id": "13116900216", "tests": ["CRP"]}]
SERVER_RX = ReceiverConfig(frame_timeout=1.0)
SERVER_TX = SenderConfig(role="computer", ack_timeout=0.5, contention_wait=0.3, busy_retry=0.2)
SIM_TX = SenderConfig(role="instrument", ack_timeout=0.3, instrument_contention_wait=0.1,
                      busy_retry=0.1)
SIM_RX = ReceiverConfig(frame_timeout=1.0)
HARD_LIMIT = 15.0                      # no test may hang: everything runs under this


class Host:
    """The gateway side for the tests: keeps messages, answers queries."""

    def __init__(self, fail_first: int = 0):
        self.messages: list[bytes] = []
        self.calls = 0
        self.fail_first = fail_first

    async def on_message(self, message: bytes, peer) -> AstmReply | None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("store unavailable")
        self.messages.append(message)
        msg = parse_message(message)
        if msg.queries:
            queries = [query_from_record(q) for q in msg.queries]
            return AstmReply([build_records(answer_records(queries, OPEN, now=NOW))])
        return None


async def start(host: Host, **kw) -> AstmServer:
    server = AstmServer(host.on_message, receiver_config=kw.pop("rx", SERVER_RX),
                        sender_config=kw.pop("tx", SERVER_TX), **kw)
    await server.start("127.0.0.1", 0)
    return server


async def simulate(server: AstmServer, scenario="crp", faults=frozenset(), **kw) -> dict:
    return await asyncio.wait_for(run_simulation(
        "127.0.0.1", server.port, scenario=scenario, faults=faults, now=NOW,
        sender_config=SIM_TX, receiver_config=SIM_RX, answer_timeout=3.0,
        byte_delay=0.0005, **kw), HARD_LIMIT)


def expected_crp() -> list[bytes]:
    return [crp_qc(NOW), crp_patient(NOW), host_query(NOW)]


async def test_crp_session_arrives_intact_and_the_query_is_answered():
    host = Host()
    server = await start(host)
    try:
        summary = await simulate(server)
    finally:
        await server.stop()
    assert summary["ok"], summary["transfers"]
    assert host.messages == expected_crp()
    (answer,) = summary["answers"]
    order = parse_message(answer).patients[0].orders[0]
    assert order.specimen_id == "LID0004712" and order.record.get(26) == "Q"
    stats = server.stats()
    assert stats["messages"] == 3 and stats["replies_sent"] == 1 and stats["aborts"] == 0
    assert summary["transcript"][0] == {"t": summary["transcript"][0]["t"], "dir": "out",
                                        "data": "<ENQ>"}


@pytest.mark.parametrize("fault", sorted(FAULTS - {"disconnect"}))
async def test_every_recoverable_fault_still_delivers_each_message_once(fault):
    host = Host()
    server = await start(host)
    try:
        summary = await simulate(server, faults={fault})
    finally:
        await server.stop()
    assert summary["ok"], (fault, summary["transfers"])
    assert host.messages == expected_crp()
    assert len(summary["answers"]) == 1


async def test_bad_checksum_is_naked_and_retransmitted():
    host = Host()
    server = await start(host)
    try:
        summary = await simulate(server, "hba1c", faults={"bad-checksum"}, fault_frame=3)
    finally:
        await server.stop()
    (transfer,) = summary["transfers"]
    assert transfer["naks"] == 1 and transfer["retransmissions"] == 1
    assert host.messages == [records("E5")]


async def test_dropped_ack_makes_a_duplicate_that_is_not_delivered_twice():
    host = Host()
    server = await start(host)
    try:
        summary = await simulate(server, "inr", faults={"drop-ack"}, fault_frame=5)
    finally:
        await server.stop()
    (transfer,) = summary["transfers"]
    assert transfer["timeouts"] == 1 and transfer["retransmissions"] == 1
    assert host.messages == [records("E6")]


async def test_disconnect_mid_message_aborts_cleanly_and_the_server_keeps_serving():
    host = Host()
    server = await start(host)
    try:
        summary = await simulate(server, "hba1c", faults={"disconnect"}, fault_frame=3)
        assert not summary["ok"]
        for _ in range(100):
            if server.stats()["connections_current"] == 0:
                break
            await asyncio.sleep(0.01)
        assert host.messages == []
        assert server.stats()["aborts"] == 1
        again = await simulate(server, "qc")
        assert again["ok"] and host.messages == [records("E7")]
    finally:
        await server.stop()


async def test_failing_callback_naks_the_last_frame_and_the_retry_is_delivered():
    host = Host(fail_first=1)
    server = await start(host)
    try:
        summary = await simulate(server, "inr")
    finally:
        await server.stop()
    assert summary["ok"]
    assert host.calls == 2 and host.messages == [records("E6")]
    assert summary["transfers"][0]["naks"] == 1
    assert server.stats()["messages_failed"] == 1


async def test_callback_that_always_fails_makes_the_instrument_give_up():
    host = Host(fail_first=100)
    server = await start(host)
    try:
        summary = await simulate(server, "qc")
    finally:
        await server.stop()
    assert not summary["ok"]
    assert summary["transfers"][0]["outcome"] == "aborted: frame failed 6 times"
    assert host.messages == []


async def test_many_instruments_at_once():
    host = Host()
    server = await start(host)
    try:
        summaries = await asyncio.gather(*(simulate(server, s) for s in
                                           ["crp", "hba1c", "inr", "qc", "query", "crp"]))
    finally:
        await server.stop()
    assert all(s["ok"] for s in summaries)
    assert len(host.messages) == 3 + 1 + 1 + 1 + 1 + 3
    assert server.stats()["connections_total"] == 6


async def test_silent_peer_after_enq_is_timed_out():
    host = Host()
    server = await start(host, rx=ReceiverConfig(frame_timeout=0.2))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENQ)
        assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK
        for _ in range(100):
            if server.stats()["aborts"]:
                break
            await asyncio.sleep(0.02)
        assert server.stats()["aborts"] == 1
        writer.write(ENQ)                              # the line is usable again
        assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK
        writer.close()
    finally:
        await server.stop()


async def test_raw_peer_byte_level_exchange_and_hostile_bytes():
    host = Host()
    server = await start(host)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        noise = bytes(b for b in range(256) if b != ENQ[0]) * 4
        writer.write(noise)                            # noise on a neutral line: ignored
        writer.write(ENQ)
        assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK
        frames_ = encode_records(split_message(records("E7")))
        writer.write(frames_[0][:-4] + b"00\r\n")      # bad checksum
        assert await asyncio.wait_for(reader.readexactly(1), 2) == NAK
        for f in frames_:
            writer.write(f)
            assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK
        writer.write(EOT)
        writer.close()
        for _ in range(100):
            if host.messages:
                break
            await asyncio.sleep(0.01)
        assert host.messages == [records("E7")]
    finally:
        await server.stop()


async def test_contention_gateway_yields_to_the_instrument_then_answers():
    host = Host()
    server = await start(host)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENQ)
        assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK
        for f in encode_records(split_message(records("E8"))):
            writer.write(f)
            assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK
        writer.write(EOT)
        assert await asyncio.wait_for(reader.readexactly(1), 2) == ENQ   # gateway bids
        writer.write(ENQ)                                                # instrument bids too
        assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK   # instrument wins
        for f in encode_records(split_message(records("E6"))):
            writer.write(f)
            assert await asyncio.wait_for(reader.readexactly(1), 2) == ACK
        writer.write(EOT)
        assert await asyncio.wait_for(reader.readexactly(1), 3) == ENQ   # bids again later
        writer.write(ACK)
        first = await asyncio.wait_for(reader.readuntil(b"\n"), 2)
        assert first.startswith(b"\x021H|")
        writer.close()
    finally:
        await server.stop()
    assert host.messages == [records("E8"), records("E6")]
    assert server.stats()["contentions"] == 1


async def test_stop_closes_idle_connections():
    host = Host()
    server = await start(host)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(100):
        if server.stats()["connections_current"]:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(server.stop(), 3)
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()


async def test_connections_over_the_limit_are_refused():
    host = Host()
    server = await start(host, max_connections=1)
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", server.port)
        for _ in range(100):
            if server.stats()["connections_current"]:
                break
            await asyncio.sleep(0.01)
        r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(r2.read(), 2) == b""
        assert server.stats()["connections_refused"] == 1
        w1.close()
        w2.close()
    finally:
        await server.stop()


async def test_unknown_scenario_and_fault_are_refused():
    with pytest.raises(ValueError):
        await run_simulation("127.0.0.1", 1, faults={"meteor"})
    host = Host()
    server = await start(host)
    try:
        with pytest.raises(ValueError):
            await run_simulation("127.0.0.1", server.port, scenario="nope")
    finally:
        await server.stop()


async def test_a_peer_streaming_ahead_of_a_slow_store_is_held_to_a_bounded_read_ahead():
    from adapters.astm.frames import ACK as ACK_BYTE, ENQ, encode_records
    from adapters.astm.server import READ_AHEAD, READ_CHUNK
    from astm_data import records

    release = asyncio.Event()

    class SlowHost(Host):
        async def on_message(self, message, peer):
            await release.wait()                  # the store is slow
            return await super().on_message(message, peer)

    host = SlowHost()
    server = await start(host)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(ENQ)
        assert await asyncio.wait_for(reader.read(1), 5) == ACK_BYTE
        writer.write(b"".join(encode_records([records("E5")])))   # on_message now waits
        junk = b"\x00" * READ_CHUNK
        sent = 0
        for _ in range(160):                      # try to push 10 MiB at it
            writer.write(junk)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except asyncio.TimeoutError:
                break                             # the server stopped reading: back-pressure
            sent += len(junk)
        assert sent < 160 * READ_CHUNK            # it did stop reading
        assert server.stats()["read_ahead_peak"] <= READ_AHEAD + READ_CHUNK
    finally:
        release.set()
        writer.close()
        await server.stop()
