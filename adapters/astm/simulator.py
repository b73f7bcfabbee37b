"""An ASTM point-of-care instrument simulator (backs ``labgate simulate astm``).

It connects to a host, sends a scenario's transfers with the E1381
:class:`Sender` (instrument role), waits for the host's answer after a host
query with a :class:`Receiver`, and returns a summary with a transcript.

Faults (``faults``), injected at the byte level, never in the machines:

- ``bad-checksum``: frame number ``fault_frame`` (1-based, counted over the
  session) goes out once with a wrong checksum; the host must NAK it.
- ``drop-ack``: the host's first ACK to frame ``fault_frame`` is ignored;
  the simulator times out and sends the frame again, which the host must
  acknowledge as a duplicate and not deliver twice.
- ``slow``: every byte is written alone, ``byte_delay`` seconds apart.
- ``split``: writes are cut into small random chunks.
- ``garbage``: noise bytes (no E1381 control characters) before every frame.
- ``disconnect``: the connection is closed after frame ``fault_frame``.
"""
from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime

from .actions import (Aborted, Action, CancelTimer, Interrupted, MessageReceived, Send, SetTimer,
                      TransferComplete, TransferEnded)
from .e1381 import Receiver, ReceiverConfig, Sender, SenderConfig
from .frames import ACK, STX
from .scenarios import has_query, transfers

FAULTS = frozenset({"bad-checksum", "drop-ack", "slow", "split", "garbage", "disconnect"})
_NOISE = bytes(b for b in range(0x20, 0x7F)) + b"\x00\xff\r\n"


class _Disconnected(Exception):
    pass


class _Link:
    """The simulator's socket with fault injection and a transcript."""

    def __init__(self, reader, writer, faults, fault_frame, byte_delay, rng, transcript_limit):
        self.reader, self.writer = reader, writer
        self.faults, self.fault_frame = faults, fault_frame
        self.byte_delay, self.rng = byte_delay, rng
        self.frames_sent = 0
        self.checksum_spoiled = False
        self.ack_dropped = False
        self.started = time.monotonic()
        self.transcript: list[dict] = []
        self.transcript_limit = transcript_limit

    def note(self, direction: str, data: bytes) -> None:
        if len(self.transcript) < self.transcript_limit:
            self.transcript.append({"t": round(time.monotonic() - self.started, 4),
                                    "dir": direction, "data": _printable(data)})

    async def write(self, data: bytes) -> None:
        if data.startswith(STX):
            self.frames_sent += 1
            if "garbage" in self.faults:
                size = self.rng.randint(1, 12)
                await self._raw(bytes(self.rng.choice(_NOISE) for _ in range(size)))
            if ("bad-checksum" in self.faults and not self.checksum_spoiled
                    and self.frames_sent == self.fault_frame):
                self.checksum_spoiled = True
                data = _spoil_checksum(data)
        await self._raw(data)
        if ("disconnect" in self.faults and data.startswith(STX)
                and self.frames_sent >= self.fault_frame):
            self.writer.close()
            raise _Disconnected()

    async def _raw(self, data: bytes) -> None:
        self.note("out", data)
        if "slow" in self.faults:
            for i in range(len(data)):
                self.writer.write(data[i:i + 1])
                await self.writer.drain()
                await asyncio.sleep(self.byte_delay)
        elif "split" in self.faults:
            i = 0
            while i < len(data):
                n = self.rng.randint(1, 7)
                self.writer.write(data[i:i + n])
                await self.writer.drain()
                await asyncio.sleep(0)
                i += n
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def read(self, timeout: float | None) -> bytes | None:
        """Bytes from the host; None on timeout; b"" when the host closed."""
        try:
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return None
        except (ConnectionError, OSError):
            return b""
        if data:
            self.note("in", data)
        return data

    def filter_acks(self, data: bytes, waiting_frame: int) -> bytes:
        """Drop the first ACK to frame ``fault_frame`` when ``drop-ack`` is on."""
        if ("drop-ack" in self.faults and not self.ack_dropped
                and waiting_frame == self.fault_frame and ACK in data):
            self.ack_dropped = True
            i = data.index(ACK)
            return data[:i] + data[i + 1:]
        return data


async def _drive(link: _Link, machine, first: list[Action], deadline_cap: float,
                 on_data=None) -> dict:
    """Run one machine until it reports an end; returns what happened."""
    outcome: dict = {"outcome": None, "messages": []}
    timer: float | None = None
    actions = first
    cap = time.monotonic() + deadline_cap
    while True:
        for a in actions:
            if isinstance(a, Send):
                await link.write(a.data)
            elif isinstance(a, SetTimer):
                timer = time.monotonic() + a.seconds
            elif isinstance(a, CancelTimer):
                timer = None
            elif isinstance(a, MessageReceived):
                outcome["messages"].append(a.data)
            elif isinstance(a, (TransferComplete, TransferEnded)):
                outcome["outcome"] = "complete"
            elif isinstance(a, Interrupted):
                outcome["outcome"] = f"interrupted ({a.unsent_frames} frames unsent)"
            elif isinstance(a, Aborted):
                outcome["outcome"] = f"aborted: {a.reason}"
        if outcome["outcome"] is not None:
            return outcome
        now = time.monotonic()
        if now >= cap:
            outcome["outcome"] = "aborted: simulator deadline"
            return outcome
        wait = min(cap, timer) - now if timer is not None else cap - now
        data = await link.read(max(0.0, wait))
        if data is None:
            actions = machine.timeout() if timer is not None and time.monotonic() >= timer else []
            continue
        if data == b"":
            outcome["outcome"] = "aborted: connection closed by host"
            return outcome
        if on_data is not None:
            data = on_data(data)
        actions = machine.feed(data)


async def run_simulation(host: str, port: int, *, scenario: str = "crp",
                         faults: set[str] | frozenset[str] = frozenset(),
                         fault_frame: int = 2, byte_delay: float = 0.002,
                         sender_config: SenderConfig | None = None,
                         receiver_config: ReceiverConfig | None = None,
                         answer_timeout: float = 30.0, session_timeout: float = 120.0,
                         now: datetime | None = None, seed: int = 0,
                         transcript_limit: int = 2000,
                         plan: list[list[bytes]] | None = None) -> dict:
    """Play ``scenario`` against an ASTM host at ``host:port``; return a summary.

    The summary holds ``ok`` (every transfer complete, every expected answer
    received), per-transfer outcomes and counters, the answers received
    (decoded latin-1) and a transcript of the bytes both ways. ``plan``
    (transfers of E1394 messages) replaces the scenario's transfers.
    """
    unknown = set(faults) - FAULTS
    if unknown:
        raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
    plan = plan if plan is not None else transfers(scenario, now)
    sender_config = sender_config or SenderConfig(role="instrument")
    receiver_config = receiver_config or ReceiverConfig()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10.0)
    link = _Link(reader, writer, set(faults), fault_frame, byte_delay,
                 random.Random(seed), transcript_limit)
    summary: dict = {"scenario": scenario, "faults": sorted(faults), "transfers": [],
                     "answers": [], "ok": True}
    try:
        for messages in plan:
            result = await _send_transfer(link, messages, sender_config, session_timeout)
            summary["transfers"].append(result)
            if result["outcome"] != "complete":
                summary["ok"] = False
                break
            if has_query(messages):
                answer = await _receive_answer(link, receiver_config, answer_timeout)
                summary["answers"] += [m.decode("latin-1") for m in answer["messages"]]
                if answer["outcome"] != "complete" or not answer["messages"]:
                    summary["ok"] = False
                    summary["answer_outcome"] = answer["outcome"]
    except _Disconnected:
        summary["ok"] = False
        summary["transfers"].append({"outcome": "aborted: simulated disconnect"})
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    summary["frames_sent"] = link.frames_sent
    summary["elapsed"] = round(time.monotonic() - link.started, 3)
    summary["transcript"] = link.transcript
    return summary


async def _send_transfer(link: _Link, messages: list[bytes], config: SenderConfig,
                         cap: float) -> dict:
    sender = Sender(config)
    first = sender.send(messages)
    result = await _drive(link, sender, first, cap,
                          on_data=lambda d: link.filter_acks(d, link.frames_sent))
    result.pop("messages")
    result.update({k: sender.stats[k] for k in ("frames", "retransmissions", "naks", "timeouts")})
    result["messages_sent"] = len(messages)
    return result


async def _receive_answer(link: _Link, config: ReceiverConfig, timeout: float) -> dict:
    receiver = Receiver(config)
    started = time.monotonic()
    first: list[Action] = []
    # Wait for the host's ENQ; the receiver's own timer only runs once it bids.
    while receiver.idle:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            return {"outcome": "aborted: no answer from host", "messages": []}
        data = await link.read(left)
        if data == b"":
            return {"outcome": "aborted: connection closed by host", "messages": []}
        if data:
            first = receiver.feed(data)
    return await _drive(link, receiver, first, max(0.1, timeout - (time.monotonic() - started)))


def _spoil_checksum(frame: bytes) -> bytes:
    """The frame with its first checksum digit changed."""
    i = len(frame) - 4                       # ... C1 C2 CR LF
    c = frame[i:i + 1]
    return frame[:i] + (b"0" if c != b"0" else b"1") + frame[i + 1:]


def _printable(data: bytes) -> str:
    names = {0x02: "<STX>", 0x03: "<ETX>", 0x04: "<EOT>", 0x05: "<ENQ>", 0x06: "<ACK>",
             0x15: "<NAK>", 0x17: "<ETB>", 0x0D: "<CR>", 0x0A: "<LF>"}
    return "".join(names.get(b, chr(b) if 0x20 <= b < 0x7F else f"<{b:02X}>") for b in data)
