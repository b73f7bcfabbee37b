"""How the server closes a device connection, over real sockets on 127.0.0.1.

A device may still be sending when the gateway ends the conversation (a
trailing ACK, its queued messages, the rest of an oversized one). Closing a
socket with unread bytes makes the kernel send RST, and the device may then
never read the END that says why. The server closes with a lingering close
(adapters/closing.py): the device reads everything and then a clean EOF.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from adapters.poct1a.build import Operator, OperatorList
from adapters.poct1a.conversation import (ACK_TIMEOUT, ACK_UNEXPECTED, ConversationConfig,
                                          EXPECTED_HELLO, IDLE_TIMEOUT, MESSAGE_TIMEOUT)
from adapters.poct1a.server import PoctServer, ServerConfig
from adapters.poct1a.stream import StreamSplitter
from adapters.poct1a.xml import XML_TOO_LARGE, parse_message

HEL = (b'<HEL.R01><HDR><HDR.control_id V="1"/><HDR.version_id V="POCT1"/></HDR>'
       b'<DEV><DEV.serial_id V="S1"/></DEV></HEL.R01>')
OBS = b'<OBS.R01><HDR><HDR.control_id V="2"/></HDR></OBS.R01>'
END = b'<END.R01><HDR><HDR.control_id V="3"/></HDR><TRM><TRM.reason_cd V="NRM"/></TRM></END.R01>'
STRAY_ACK = (b'<ACK.R01><HDR><HDR.control_id V="4"/></HDR><ACK><ACK.type_cd V="AA"/>'
             b'<ACK.ack_control_id V="77"/></ACK></ACK.R01>')
MAX_MESSAGE = 100_000


def dst(cid: int) -> bytes:
    return b'<DST.R01><HDR><HDR.control_id V="%d"/></HDR></DST.R01>' % cid


QUEUED = b"".join(dst(n) for n in range(1000, 20_000))    # ~1 MB of queued status messages


class Device:
    """A raw device connection whose reader runs on its own until EOF or a reset."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.received = bytearray()
        self.got_data = asyncio.Event()
        self.reading = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> "Device":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def _read(self) -> str:
        try:
            while chunk := await self.reader.read(65536):
                self.received.extend(chunk)
                self.got_data.set()
        except ConnectionResetError:
            return "reset"
        return "eof"

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def keep_sending(self, chunk: bytes, budget: float = 5.0, *, past_eof: bool = False) -> str:
        """Write ``chunk`` again and again until the gateway's EOF (or, ``past_eof``, until
        a write fails), ``budget`` seconds at most. Returns why it stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        try:
            while (past_eof or not self.reading.done()) and loop.time() < deadline:
                self.writer.write(chunk)
                await asyncio.wait_for(self.writer.drain(), max(0.01, deadline - loop.time()))
                await asyncio.sleep(0)      # let the gateway (same loop) run
        except ConnectionError:
            return "write failed"
        except TimeoutError:
            return "budget"
        return "eof" if self.reading.done() and not past_eof else "budget"

    async def ending(self, timeout: float = 5.0) -> str:
        """"eof" or "reset": how the gateway's side of the stream ended."""
        return await asyncio.wait_for(asyncio.shield(self.reading), timeout)

    def messages(self) -> list:
        return [parse_message(f) for f in StreamSplitter(max_bytes=10_000_000).feed(bytes(self.received))]

    def close(self) -> None:
        self.reading.cancel()
        self.writer.close()


def gateway(*, pushes=(), **config) -> PoctServer:
    async def on_observation(msg, peer):
        return True, None

    async def on_hello(msg, peer):
        return list(pushes)

    conv = ConversationConfig(max_message_bytes=MAX_MESSAGE)
    return PoctServer(on_observation, on_hello=on_hello,
                      config=ServerConfig(conversation=conv, **config))


async def wait_until(predicate, timeout: float = 5.0) -> float:
    """Poll ``predicate`` until true (bounded); returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


# The device is still sending when the gateway ends -------------------------------------
# (first bytes, what the device keeps sending, extra ServerConfig, expected reply types, END reason)
STILL_SENDING = {
    "rejected first message": (OBS + QUEUED, dst(1), {}, ["ACK.R01", "END.R01"], EXPECTED_HELLO),
    "protocol error": (HEL + STRAY_ACK + QUEUED, dst(1), {},
                       ["ACK.R01", "ESC.R01", "END.R01"], ACK_UNEXPECTED),
    "oversized message": (HEL + b"<OBS.R01>" + b"x" * 1_000_000, b"x" * 65536, {},
                          ["ACK.R01", "ESC.R01", "END.R01"], XML_TOO_LARGE),
    "message never completed": (HEL + b"<DST.R01>", b"x", {"message_timeout": 0.2},
                                ["ACK.R01", "END.R01"], MESSAGE_TIMEOUT),
    "push never acknowledged": (HEL + dst(2), dst(2), {"ack_timeout": 0.2},
                                None, ACK_TIMEOUT),
    "device ended": (HEL + END + QUEUED, dst(1), {}, ["ACK.R01"], None),
}


@pytest.mark.parametrize("case", list(STILL_SENDING))
async def test_a_device_still_sending_reads_the_end_and_a_clean_eof(case):
    first, trailing, config, expected, reason = STILL_SENDING[case]
    pushes = [OperatorList((Operator("OP017", "Kari Nordmann", "1"),))] if config.get("ack_timeout") else []
    server = gateway(pushes=pushes, **config)
    _, port = await server.start()
    device = await Device.connect(port)
    try:
        device.writer.write(first)      # more than the gateway reads before it decides
        await device.keep_sending(trailing)
        ending = await device.ending()
        msgs = device.messages()
    finally:
        device.close()
        await server.stop()
    assert ending == "eof"
    if expected is not None:
        assert [m.msg_type for m in msgs] == expected
    if reason is None:
        assert msgs and msgs[-1].msg_type != "END.R01"
    else:
        assert msgs[-1].msg_type == "END.R01" and reason in msgs[-1].value("TRM.note_txt")


@pytest.mark.parametrize("first,burst,reason", [
    (OBS, QUEUED * 8, EXPECTED_HELLO),
    (HEL + b"<OBS.R01>", b"x" * 8_000_000, XML_TOO_LARGE),
], ids=["rejected", "oversized"])
async def test_a_device_that_sends_everything_before_it_reads_still_gets_the_end(first, burst, reason):
    # A simple device writes out its whole queue and only then reads. With a
    # plain close() the gateway's RST arrives first and the END is lost: the
    # device's stream raises the reset before the bytes it holds.
    server = gateway()
    _, port = await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received, ending = bytearray(), "eof"
    try:
        writer.write(first + burst)
        await asyncio.wait_for(writer.drain(), 5)
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received.extend(chunk)
    except ConnectionResetError:
        ending = "reset"
    finally:
        writer.close()
        await server.stop()
    msgs = [parse_message(f) for f in StreamSplitter().feed(bytes(received))]
    assert ending == "eof"
    assert msgs and msgs[-1].msg_type == "END.R01" and reason in msgs[-1].value("TRM.note_txt")


async def test_stop_while_the_device_is_sending_still_delivers_the_end():
    server = gateway()
    _, port = await server.start()
    device = await Device.connect(port)
    try:
        await device.send(HEL)
        await asyncio.wait_for(device.got_data.wait(), 5)     # HEL answered
        device.writer.write(QUEUED)
        sending = asyncio.create_task(device.keep_sending(dst(1)))
        stopping = asyncio.create_task(server.stop(grace=10))
        ending = await device.ending()
        assert await sending == "eof"
        msgs = device.messages()
    finally:
        device.close()                  # the lingering gateway sees this and closes
    await asyncio.wait_for(stopping, 5)
    assert ending == "eof"
    assert msgs[-1].msg_type == "END.R01" and msgs[-1].value("TRM.reason_cd") == "NRM"
    assert {m.msg_type for m in msgs[:-1]} == {"ACK.R01"}


async def test_idle_timeout_end_survives_a_trailing_message():
    server = gateway(idle_timeout=0.1)
    _, port = await server.start()
    device = await Device.connect(port)
    try:
        await device.send(HEL)
        await wait_until(lambda: b"END.R01" in device.received)
        await device.keep_sending(END)   # the device says goodbye after reading END
        ending = await device.ending()
        msgs = device.messages()
    finally:
        device.close()
        await server.stop()
    assert ending == "eof"
    assert [m.msg_type for m in msgs] == ["ACK.R01", "END.R01"]
    assert IDLE_TIMEOUT in msgs[-1].value("TRM.note_txt")


# The linger is bounded ------------------------------------------------------------------

@pytest.mark.parametrize("keeps_sending", [False, True], ids=["silent", "sending"])
async def test_a_device_that_never_closes_is_let_go_after_the_linger(keeps_sending):
    linger = 0.3
    server = gateway(idle_timeout=0.05, close_linger=linger)
    _, port = await server.start()
    device = await Device.connect(port)
    sending = None
    try:
        await device.send(HEL)
        assert await device.ending() == "eof"           # END, then the gateway's FIN
        if keeps_sending:
            sending = asyncio.create_task(device.keep_sending(dst(1), budget=3.0, past_eof=True))
        held = await wait_until(lambda: server.stats()["connections_open"] == 0)
        if sending is not None:
            # the gateway let go of a device still sending: its writes now fail
            assert await asyncio.wait_for(sending, 5) == "write failed"
    finally:
        device.close()
        await server.stop()
    assert held < linger + 1.0
    assert device.messages()[-1].msg_type == "END.R01"


async def test_stop_is_not_held_up_by_a_device_that_never_closes():
    linger, grace = 0.3, 10.0
    server = gateway(close_linger=linger)
    _, port = await server.start()
    devices = [await Device.connect(port) for _ in range(3)]
    try:
        for d in devices:
            await d.send(HEL)
        await wait_until(lambda: all(d.got_data.is_set() for d in devices))
        started = time.monotonic()
        await asyncio.wait_for(server.stop(grace=grace), grace)
        took = time.monotonic() - started
        endings = [await d.ending() for d in devices]
    finally:
        for d in devices:
            d.close()
    assert took < linger + 1.0
    assert endings == ["eof"] * 3
    assert all(d.messages()[-1].msg_type == "END.R01" for d in devices)
    assert server.stats()["connections_open"] == 0
