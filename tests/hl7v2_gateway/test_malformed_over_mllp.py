"""Hostile and broken input over real sockets: a negative ACK naming the
reason (or, for what is not a message at all, a closed connection), while a
well-behaved sender on another connection is served throughout."""
from __future__ import annotations

import asyncio
import os

import pytest
from support import base_config, field, frame, oru_r01, segments

MSH = ("MSH|^~\\&|POCDM|LEGEVAKT|LABGW|KOMMUNE|20250314093200+0100||ORU^R01^ORU_R01|{cid}|P|2.5.1"
       "|||AL|NE||UNICODE UTF-8")


def _msg(cid: str, *rest: str) -> bytes:
    return ("\r".join([MSH.format(cid=cid), *rest]) + "\r").encode()


CASES = [
    ("truncated MSH", b"MSH|^~\\&|POCDM|LEG", "AR", "HL7-MSH-TOO-SHORT"),
    ("truncated segment mid-name", _msg("T-2", "PID|1||13116900216^^^^NNNOR", "OB"), "AR",
     "HL7-SEGMENT-NAME"),
    ("MSH-1 is a letter", oru_r01("BAD-0").replace(b"MSH|^~\\&|", b"MSHX^~\\&X", 1), "AR", "HL7-DELIMITERS"),
    ("MSH-2 repeats a delimiter", oru_r01("BAD-1").replace(b"MSH|^~\\&|", b"MSH|^^\\&|", 1), "AR",
     "HL7-DELIMITERS"),
    ("MSH-2 three characters", oru_r01("BAD-2").replace(b"MSH|^~\\&|", b"MSH|^~\\|", 1), "AR", "HL7-DELIMITERS"),
    # every byte but the MLLP frame markers (those would split it into several frames)
    ("binary garbage in a frame", bytes(b for b in range(256) if b not in (0x0b, 0x1c)) * 4,
     "AR", "HL7-MSH-MISSING"),
    ("control bytes inside a message", oru_r01("BAD-3").replace(b"Danser", b"Dan\x00\x07ser"), "AR",
     "HL7-CONTROL-CHARACTER"),
    ("invalid UTF-8 under MSH-18 UTF-8", oru_r01("BAD-4").replace(b"Danser", b"Dan\xff\xfeser"), "AR",
     "HL7-ENCODING"),
    ("thousands of repetitions", _msg("T-9", "PID|1||" + "~".join(["1^^^^MR"] * 5000)), "AR",
     "HL7-TOO-MANY-REPETITIONS"),
    ("thousands of segments", _msg("T-10", *(["NTE|1||x"] * 6000)), "AR", "HL7-TOO-MANY-SEGMENTS"),
    ("a batch instead of a message", b"BHS|^~\\&|X\rMSH|^~\\&|A|B|C|D|2025||ORU^R01|1|P|2.5.1\rBTS|1\r",
     "AR", "HL7-MSH-MISSING"),
    ("no message type", oru_r01("BAD-5").replace(b"ORU^R01^ORU_R01", b""), "AR", "HL7-MSH-9-MISSING"),
]


async def _good_sender(port: int, stop: asyncio.Event) -> list[str]:
    """Send valid messages one after another until ``stop``; return their MSA-1 codes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codes = []
    n = 0
    try:
        while not stop.is_set() or n < 3:
            n += 1
            writer.write(frame(oru_r01(f"GOOD-{n}")))
            await writer.drain()
            data = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 15)
            codes.append(field(data[1:-2], "MSA", 1))
    finally:
        writer.close()
    return codes


@pytest.fixture
async def gateway(gateway_factory):
    return await gateway_factory(base_config())


async def test_malformed_messages_get_named_negative_acks_while_others_are_served(gateway):
    port = gateway.listeners["mllp-in"].port
    stop = asyncio.Event()
    good = asyncio.create_task(_good_sender(port, stop))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for name, raw, code, rule in CASES:
            writer.write(b"\x00\xff noise outside any frame \x1c" + frame(raw))
            await writer.drain()
            data = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 15)
            ack = data[data.index(b"\x0b") + 1:-2]
            assert field(ack, "MSA", 1) == code, name
            assert any(rule in e for e in segments(ack, "ERR")), (name, segments(ack, "ERR"))
    finally:
        writer.close()
        stop.set()
    codes = await good
    assert codes and set(codes) == {"AA"}
    rejected = await gateway.pool.fetchval(
        "SELECT count(*) FROM message WHERE status = 'rejected'")
    assert rejected == len(CASES)   # every one stored with its raw bytes and verdict


async def test_ten_megabyte_message_is_refused_and_the_connection_closed(gateway):
    port = gateway.listeners["mllp-in"].port
    stop = asyncio.Event()
    good = asyncio.create_task(_good_sender(port, stop))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        huge = _msg("HUGE", "PID|1||13116900216^^^^NNNOR", "NTE|1||" + "x" * (10 * 1024 * 1024))
        writer.write(frame(huge))
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await writer.drain()
            data = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 15)
            ack = data[data.index(b"\x0b") + 1:-2]
            assert field(ack, "MSA", 1) == "AR"
            assert any("MLLP-MESSAGE-TOO-LARGE" in e for e in segments(ack, "ERR"))
            await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 15)   # then closed: raises
    finally:
        writer.close()
        stop.set()
    assert set(await good) == {"AA"}
    # counted with the reason (and logged as mllp.message_too_large)
    assert gateway.listeners["mllp-in"].stats()["oversize"] == 1


async def test_random_bytes_on_many_connections_do_not_stop_the_listener(gateway):
    port = gateway.listeners["mllp-in"].port

    async def garbage(seed: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rnd = os.urandom(4096 + seed)
        writer.write(rnd + frame(rnd[:2000]) + b"\x0b" + rnd[:100])   # ends mid-frame
        await writer.drain()
        writer.close()

    stop = asyncio.Event()
    good = asyncio.create_task(_good_sender(port, stop))
    await asyncio.gather(*(garbage(i) for i in range(20)))
    stop.set()
    assert set(await good) == {"AA"}
