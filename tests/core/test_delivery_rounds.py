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


def _locked_out(gw) -> float:
    return gw.metrics.registry.get_sample_value(
        "labgate_delivery_locked_out_total", {"destination": "lis-mllp"}) or 0.0


async def test_a_gateway_locked_out_of_an_ordered_destination_backs_off(gateway_factory):
    """Two gateways, one ordered destination: every NOTIFY wakes both, one
    delivers. The other must not answer each wake-up with a failed lock
    attempt (a transaction in both processes and the database); it looks
    again after the poll interval."""
    from gateway.delivery import POLL_SECONDS
    receiver = await MllpReceiver().start()
    a = await gateway_factory(base_config(dest_port=receiver.port))
    b = await gateway_factory(base_config(dest_port=receiver.port))
    port = a.listeners["mllp-in"].port
    t0 = time.monotonic()

    async def sender(k: int) -> None:
        for i in range(40):
            [ack] = await mllp_exchange("127.0.0.1", port, [oru_r01(f"L-{k}-{i}")])
            assert field(ack, "MSA", 1) == "AA"

    await asyncio.gather(*(sender(k) for k in range(8)))
    await receiver.wait_for(320, timeout=30)
    elapsed = time.monotonic() - t0
    await receiver.stop()
    ids = [int(c[2:]) for c in receiver.control_ids()]
    assert ids == sorted(ids) and len(set(ids)) == 320
    # at most one failed attempt per gateway per poll interval (plus the first)
    allowed = 2 * (elapsed / POLL_SECONDS + 1)
    assert _locked_out(a) + _locked_out(b) <= allowed, (_locked_out(a), _locked_out(b), elapsed)
