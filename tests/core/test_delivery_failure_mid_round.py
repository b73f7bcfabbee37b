"""A failure in the middle of a delivery round.

An ordered destination stops at the failed row and gets it again, then the
rest, in id order; an unordered one gets the rest of the round at once and
the failed row after its backoff. A connection lost in the middle (no ACK)
is the same kind of failure as a negative ACK, recorded as "error" rather
than "rejected". Rows are stored by an intake process first, so that one
delivery round claims them all.
"""
from __future__ import annotations

import asyncio

import pytest

from support import CR, FS, VT, base_config, field, frame, mllp_exchange, oru_r01

N = 6


class ScriptedReceiver:
    """A destination whose answer to the k-th message it receives (1-based)
    is scripted: "AE" (a negative ACK) or "close" (drop the connection
    without answering); every other message gets AA."""

    def __init__(self, script: dict[int, str]):
        self.script = script
        self.control_ids: list[str] = []
        self.connections = 0

    async def start(self) -> "ScriptedReceiver":
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _conn(self, reader, writer):
        self.connections += 1
        try:
            while True:
                data = await reader.readuntil(FS + CR)
                msg = data[data.index(VT) + 1:-2]
                ctrl = field(msg, "MSH", 10)
                self.control_ids.append(ctrl)
                answer = self.script.get(len(self.control_ids), "AA")
                if answer == "close":
                    return
                writer.write(frame((f"MSH|^~\\&|RECEIVER||LABGATE||20250101000000||ACK^R01^ACK|"
                                    f"R{len(self.control_ids)}|P|2.5.1\rMSA|{answer}|{ctrl}\r").encode()))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _deliver(gateway_factory, receiver: ScriptedReceiver, *, ordered: bool) -> tuple:
    cfg = base_config(dest_port=receiver.port, pull=False, max_attempts=5)
    cfg["destinations"][0]["ordered"] = ordered
    intake = await gateway_factory(cfg, role="intake")
    acks = await mllp_exchange("127.0.0.1", intake.listeners["mllp-in"].port,
                               [oru_r01(f"R-{i}") for i in range(N)])
    assert [field(a, "MSA", 1) for a in acks] == ["AA"] * N
    ids = [r["id"] for r in await intake.pool.fetch(
        "SELECT id FROM outbox WHERE destination = 'lis-mllp' ORDER BY id")]
    await gateway_factory(cfg, role="delivery")

    async def all_delivered():
        while await intake.pool.fetchval("SELECT count(*) FROM outbox WHERE destination = 'lis-mllp'"
                                         " AND state = 'delivered'") < N:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(all_delivered(), 10)
    attempts = await intake.pool.fetch(
        "SELECT outbox_id, outcome, detail FROM delivery_attempt ORDER BY id")
    return [f"LG{i}" for i in ids], attempts


@pytest.mark.parametrize("answer", ["AE", "close"])
async def test_ordered_stops_at_the_failed_row_and_resumes_from_it(gateway_factory, answer):
    receiver = await ScriptedReceiver({3: answer}).start()
    try:
        lg, attempts = await _deliver(gateway_factory, receiver, ordered=True)
    finally:
        await receiver.stop()
    # The 3rd row failed; nothing after it went first; it was sent again, then the rest.
    assert receiver.control_ids == lg[:3] + lg[2:]
    failed = [a for a in attempts if a["outcome"] != "delivered"]
    assert [f"LG{a['outbox_id']}" for a in failed] == [lg[2]]
    assert failed[0]["outcome"] == ("rejected" if answer == "AE" else "error")
    if answer == "close":
        assert "closed the connection" in failed[0]["detail"]
        assert receiver.connections == 2          # one new connection after the drop
    else:
        assert receiver.connections == 1          # a negative ACK keeps the connection


@pytest.mark.parametrize("answer", ["AE", "close"])
async def test_unordered_goes_on_past_the_failed_row(gateway_factory, answer):
    receiver = await ScriptedReceiver({3: answer}).start()
    try:
        lg, attempts = await _deliver(gateway_factory, receiver, ordered=False)
    finally:
        await receiver.stop()
    # All six in the first round, the failed one again after its backoff.
    assert receiver.control_ids == lg + [lg[2]]
    outcomes = [(f"LG{a['outbox_id']}", a["outcome"]) for a in attempts]
    assert outcomes[:N] == [(c, "delivered" if c != lg[2] else
                             ("rejected" if answer == "AE" else "error")) for c in lg]
    assert outcomes[N:] == [(lg[2], "delivered")]
