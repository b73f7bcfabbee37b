"""One migrated database connection for command-line tasks (token, user, audit).

Uses the configured database (LABGATE_DATABASE_URL or [database].url), or
starts the embedded PostgreSQL for the duration of the task.
"""
from __future__ import annotations

import asyncio

import asyncpg

from . import migrate
from .app import database_url
from .embedded_pg import EmbeddedPostgres, home


async def run_with_database(config, work) -> int:
    """Run ``await work(conn)`` on the configured (or embedded) database, migrated."""
    emb, url = None, database_url(config)
    if not url:
        emb = EmbeddedPostgres(home() / "pgdata")
        url = await asyncio.to_thread(emb.start)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate.apply(conn)
            return await work(conn)
        finally:
            await conn.close()
    finally:
        if emb:
            await asyncio.to_thread(emb.stop)
