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
