"""Claiming a delivery batch reads the batch, not the outbox's history.

The claim once walked the primary key through every delivered and held row
ever written; its cost grew with the database until delivery fell behind
intake (bench/results: 29 s of backlog after 20,000 messages). These tests
read PostgreSQL's own plan counters, so they fail when a change to the query
or the indexes brings that back, whatever the machine's speed.
"""
from __future__ import annotations

import json

import asyncpg
import pytest

from gateway import migrate
from gateway.delivery import _CLAIM_DUE, _CLAIM_ORDERED

HISTORY = 3000     # delivered rows (and as many held for a pull destination)
PENDING = 500     # a backlog: a plan that sorts it reads it all
BATCH = 20


async def _outbox_with_history(conn: asyncpg.Connection) -> None:
    await migrate.apply(conn)
    await conn.execute(
        "INSERT INTO message (source, protocol, content_sha256, status, control_id)"
        " SELECT 'poc', 'mllp', '\\x00', 'accepted', 'C' || g FROM generate_series(1, $1) g",
        HISTORY + PENDING)
    await conn.execute(
        "INSERT INTO outbox (message_id, destination, state)"
        " SELECT id, 'lis', CASE WHEN id <= $1 THEN 'delivered' ELSE 'pending' END FROM message"
        " UNION ALL SELECT id, 'ehr-pull', 'held' FROM message", HISTORY)
    await conn.execute("ANALYZE outbox")
    await conn.execute("ANALYZE message")


def _outbox_rows_read(plan: dict) -> int:
    """Outbox rows the plan's scans produced or threw away."""
    node = plan["Plan"] if "Plan" in plan else plan
    own = 0
    if node.get("Relation Name") == "outbox":
        own = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
               + node.get("Rows Removed by Index Recheck", 0)) * node["Actual Loops"]
    return own + sum(_outbox_rows_read(p) for p in node.get("Plans", []))


@pytest.mark.parametrize("query", [_CLAIM_ORDERED, _CLAIM_DUE], ids=["ordered", "unordered"])
async def test_claim_reads_the_batch_not_the_history(db_url, query):
    conn = await asyncpg.connect(db_url)
    try:
        await _outbox_with_history(conn)
        async with conn.transaction():
            plan = json.loads(await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + query, "lis", BATCH))[0]
            got = await conn.fetch(query, "lis", BATCH)
        # the batch, oldest first
        assert [r["id"] for r in got] == sorted(r["id"] for r in got)
        assert len(got) == BATCH
        first = await conn.fetchval("SELECT min(id) FROM outbox WHERE destination = 'lis'"
                                    " AND state = 'pending'")
        assert got[0]["id"] == first
        # the batch (and at most as many again); nothing of the 6,000 history rows
        assert _outbox_rows_read(plan) <= 2 * BATCH, json.dumps(plan, indent=1)[:3000]
    finally:
        await conn.close()


async def test_finishing_a_round_records_outcomes_without_waiting_for_the_flush(db_url):
    """Migration 0016: outcome and attempt rows in one call; only that
    transaction commits asynchronously, the connection's next one does not."""
    from datetime import datetime, timezone

    from gateway.delivery import _FINISH
    now = datetime.now(timezone.utc)
    conn = await asyncpg.connect(db_url)
    try:
        await _outbox_with_history(conn)
        ids = [r["id"] for r in await conn.fetch(_CLAIM_ORDERED, "lis", 2)]
        async with conn.transaction():
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
            await conn.execute(_FINISH, ids, ["delivered", "pending"], [1, 1], [None, "timeout"],
                               [now, now], ["delivered", "timeout"], ["AA", "no ACK in 2 s"], [3, 2000])
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        rows = await conn.fetch(
            "SELECT o.state, o.attempts, o.last_error, o.done_at IS NOT NULL AS done,"
            " a.outcome, a.detail, a.duration_ms FROM outbox o JOIN delivery_attempt a ON a.outbox_id = o.id"
            " WHERE o.id = ANY($1) ORDER BY o.id", ids)
        assert [tuple(r) for r in rows] == [("delivered", 1, None, True, "delivered", "AA", 3),
                                            ("pending", 1, "timeout", False, "timeout", "no ACK in 2 s", 2000)]
        assert await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'results.deliver' AND resource_id::bigint IN"
            " (SELECT message_id FROM outbox WHERE id = $1)", ids[0]) == 1
    finally:
        await conn.close()
