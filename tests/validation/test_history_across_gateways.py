"""Two gateways on one database judge with one validation history.

DELTA-CHECK and ORDER-DUPLICATE read each gateway's in-memory history. A
result or order stored through one gateway must reach the other's history
(migration 0017's notifications, gateway/history_feed.py), and after the
other's LISTEN connection was lost, its catch-up must read what it missed.
Two real Gateway objects, each with its own pool, validator, listener and
MLLP port, share one embedded PostgreSQL.
"""
from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

from support import base_config, field, mllp_exchange, potassium_oru, segments

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fhir"))
from fhirkit import Client, crp_order, order_config  # noqa: E402

FNR = "13116900216"
KEY = hashlib.sha256(FNR.encode()).hexdigest()


async def _send(gw, ctrl: str, value: str, collected_min: float) -> bytes:
    msg = potassium_oru(ctrl, value, collected_min, fnr=FNR)
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [msg])
    assert field(ack, "MSA", 1) == "AA", ack
    return ack


def _codes(ack: bytes) -> set[str]:
    return {seg.split("|")[5].split("^")[0] for seg in segments(ack, "ERR")}


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _knows_potassium(gw) -> bool:
    return bool(gw.validator.results.get(KEY, "NPU03230"))


async def test_a_result_stored_by_one_gateway_is_delta_checked_by_the_other(gateway_factory):
    a = await gateway_factory(base_config())
    b = await gateway_factory(base_config())
    await _send(a, "A-1", "3.9", -24 * 60)                       # yesterday, through A
    await _until(lambda: _knows_potassium(b))
    assert DELTA in _codes(await _send(b, "B-1", "5.9", -30))    # today, through B
    # Two rows were committed and both gateways heard both notifications;
    # each learned only the other's row (its own it remembered after commit).
    await _until(lambda: a.history_feed.learned == 1)
    await asyncio.sleep(0.2)
    assert (a.history_feed.learned, b.history_feed.learned) == (1, 1)


async def test_a_recent_order_stored_by_one_gateway_is_a_duplicate_for_the_other(gateway_factory):
    a = await gateway_factory(order_config())
    b = await gateway_factory(order_config())
    from gateway import tokens
    async with a.pool.acquire() as conn:
        ehr = Client(f"http://127.0.0.1:{a.http_port}", (await tokens.create(conn, "ehr"))[1])
    try:
        status, body, _ = await ehr.post("/fhir", crp_order(FNR))
        assert status == 200, body
    finally:
        await ehr.close()
    await _until(lambda: b.history_feed.learned > 0)
    later = crp_order(FNR, hours_ago=1)
    assert "ORDER-DUPLICATE" in {i.code for i in b.validator.check(later, "ehr").issues}


async def test_history_missed_while_disconnected_is_read_after_reconnecting(gateway_factory, db_url):
    a = await gateway_factory(base_config())
    b = await gateway_factory(base_config())
    import asyncpg
    admin = await asyncpg.connect(db_url)
    try:
        # A notification that never arrives: the feed's trigger is off while A stores.
        await admin.execute("ALTER TABLE validation_result DISABLE TRIGGER validation_result_feed")
        await _send(a, "A-2", "3.9", -24 * 60)
        await admin.execute("ALTER TABLE validation_result ENABLE TRIGGER validation_result_feed")
        await asyncio.sleep(0.3)
        assert not _knows_potassium(b)
        # B's LISTEN connection drops (as in a PostgreSQL restart) and is re-opened.
        listen_pid = b._listen._conn.get_server_pid()
        await admin.execute("SELECT pg_terminate_backend($1)", listen_pid)
        await _until(lambda: _knows_potassium(b))
    finally:
        await admin.close()
    assert DELTA in _codes(await _send(b, "B-2", "5.9", -30))


async def test_an_unreadable_notification_is_logged_and_ignored(gateway_factory, db_url):
    b = await gateway_factory(base_config())
    import asyncpg
    admin = await asyncpg.connect(db_url)
    try:
        for payload in ('{"i": "x", "r": [[1, 2]]}', "not json", '{"i": "x", "o": "zz"}',
                        '{"i": "x", "r": [["k", "NPU03230", 1e300, 4.0, "mmol/L"]]}',
                        '{"i": "x", "q": [["AF2-1", "NPU19748"]]}', "[1, 2]", ""):
            await admin.execute("SELECT pg_notify('labgate_history', $1)", payload)
        # then a good one from another writer: the feed is still working
        await admin.execute("SELECT pg_notify('labgate_history', $1)",
                            f'{{"i": "", "r": [["{KEY}", "NPU03230", 1700000000000000, 4.0, "mmol/L"]]}}')
    finally:
        await admin.close()
    await _until(lambda: _knows_potassium(b))
    assert b.history_feed.learned == 1


DELTA = "DELTA-CHECK"
