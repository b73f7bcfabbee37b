"""A referral configured with an MLLP destination is pushed to the hospital
laboratory as OML^O21 (only the analyses referred to it)."""
from __future__ import annotations

import asyncio

from fhirkit import mixed_order, order_config
from support import MllpReceiver, field, segments


async def test_referred_order_is_pushed_as_oml_o21(gateway_factory):
    from gateway import tokens
    from fhirkit import Client
    receiver = await MllpReceiver().start()
    cfg = order_config()
    cfg["destinations"].append({"name": "lis-oml", "type": "mllp", "system": "lis", "host": "127.0.0.1",
                                "port": receiver.port, "max_attempts": 3, "backoff_initial_s": 0.05,
                                "backoff_max_s": 0.2, "ack_timeout_s": 2.0})
    cfg["orders"]["referrals"][0]["destination"] = "lis-oml"
    gw = await gateway_factory(cfg)
    async with gw.pool.acquire() as conn:
        ehr = Client(f"http://127.0.0.1:{gw.http_port}", (await tokens.create(conn, "ehr"))[1])
    try:
        status, resp, _ = await ehr.post("/fhir", mixed_order(poc_placer="PUSH-1"))
        assert status == 200
        await receiver.wait_for(1)
    finally:
        await ehr.close()
        await receiver.stop()
    [msg] = receiver.messages
    assert field(msg, "MSH", 9).startswith("OML^O21")
    text = msg.decode()
    assert "NPU03230" in text and "NPU19748" not in text      # only the referred analysis
    assert segments(msg, "PID") and "13116900216" in segments(msg, "PID")[0]
    assert len(segments(msg, "OBR")) == 1
    async def delivered():
        return await gw.pool.fetchval(
            "SELECT state FROM outbox o JOIN message m ON m.id = o.message_id"
            " WHERE o.destination = 'lis-oml' AND m.message_type = 'OML^O21'") == "delivered"
    await asyncio.wait_for(_until(delivered), 10)


async def _until(pred):
    while not await pred():
        await asyncio.sleep(0.05)
