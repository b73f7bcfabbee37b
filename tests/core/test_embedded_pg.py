"""The embedded PostgreSQL runs with the settings labgate sets on it."""
from __future__ import annotations

import asyncpg


async def test_new_wal_segments_are_not_zero_filled(pg_server):
    conn = await asyncpg.connect(pg_server)
    try:
        assert await conn.fetchval("SHOW wal_init_zero") == "off"
        # durability is not what was traded
        assert await conn.fetchval("SHOW fsync") == "on"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await conn.close()
