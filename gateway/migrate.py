"""Apply the SQL migrations under gateway/migrations, idempotently.

Each file runs once, in name order, inside a transaction; an advisory lock
makes concurrent start-ups of several gateways on one database safe.
"""
from __future__ import annotations

from importlib import resources

import asyncpg

_LOCK_KEY = 0x6C616267  # "labg"


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("gateway") / "migrations"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


async def apply(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migration')") is None:
            # Skipped when it exists: a non-owner gateway role may not CREATE (docs/security.md).
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migration")}
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migration (name) VALUES ($1)", name)
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
