"""Delivery rounds: ``gather_ms`` lets rows that arrive close together share
one claim and one commit, without holding back a lone message.

Rows finished in one round are updated by one transaction, so the number
of distinct ``xmin`` among the delivered outbox rows is the number of
rounds that delivered them: PostgreSQL's own record, not a counter of ours.
"""
from __future__ import annotations

import asyncio
import time

from support import MllpReceiver, base_config, field, mllp_exchange, oru_r01

MESSAGES = 12
SPACING_S = 0.03     # one message every 30 ms, one connection


async def _trickle(gw) -> None:
    port = gw.listeners["mllp-in"].port
    for i in range(MESSAGES):
        [ack] = await mllp_exchange("127.0.0.1", port, [oru_r01(f"R-{i}")])
        assert field(ack, "MSA", 1) == "AA"
        await asyncio.sleep(SPACING_S)


async def _rounds(gw, receiver) -> int:
    await receiver.wait_for(MESSAGES)
    async def delivered():
        while await gw.pool.fetchval("SELECT count(*) FROM outbox WHERE destination = 'lis-mllp'"
                                     " AND state = 'delivered'") < MESSAGES:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(delivered(), 10)
    return await gw.pool.fetchval("SELECT count(DISTINCT xmin::text) FROM outbox"
                                  " WHERE destination = 'lis-mllp'")


def _config(port: int, gather_ms: float) -> dict:
    cfg = base_config(dest_port=port)
    cfg["destinations"][0]["gather_ms"] = gather_ms
    return cfg


async def test_rows_arriving_together_share_a_round(gateway_factory):
    receiver = await MllpReceiver().start()
    gw = await gateway_factory(_config(receiver.port, gather_ms=800))
    await _trickle(gw)            # ~0.4 s: inside one gather window after the first round
    rounds = await _rounds(gw, receiver)
    await receiver.stop()
    assert rounds <= 3, rounds
    ids = [int(c[2:]) for c in receiver.control_ids()]   # LG<outbox id>
    assert ids == sorted(ids) and len(set(ids)) == MESSAGES          # in order, none twice


async def test_without_gathering_each_arrival_is_its_own_round(gateway_factory):
    receiver = await MllpReceiver().start()
    gw = await gateway_factory(_config(receiver.port, gather_ms=0))
    await _trickle(gw)
    rounds = await _rounds(gw, receiver)
    await receiver.stop()
    assert rounds >= MESSAGES // 2, rounds


async def test_a_lone_message_is_not_held_back(gateway_factory):
    receiver = await MllpReceiver().start()
    gw = await gateway_factory(_config(receiver.port, gather_ms=800))
    t0 = time.monotonic()
    await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01("LONE-1")])
    await receiver.wait_for(1)
    took = time.monotonic() - t0
    await receiver.stop()
    assert took < 0.8, took      # the gather wait comes after a round, not before
