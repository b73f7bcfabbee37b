"""API bearer tokens: issued per system, stored only as SHA-256 hashes.

A token is 32 random bytes (URL-safe base64) prefixed ``lg_``; the database
keeps its hash, so a stolen database dump does not yield usable tokens.
Revocation takes effect on the next request: nothing is cached.
"""
from __future__ import annotations

import hashlib
import secrets

import asyncpg


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create(conn: asyncpg.Connection, system: str, label: str = "") -> tuple[int, str]:
    token = "lg_" + secrets.token_urlsafe(32)
    tid = await conn.fetchval(
        "INSERT INTO api_token (system, token_sha256, label) VALUES ($1, $2, $3) RETURNING id",
        system, _hash(token), label)
    return tid, token


async def revoke(conn: asyncpg.Connection, token_id: int) -> bool:
    status = await conn.execute(
        "UPDATE api_token SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id)
    return status.endswith(" 1")


async def revoke_labelled(conn: asyncpg.Connection, label: str) -> int:
    """Revoke every live token with this label (e.g. the previous demo run's)."""
    status = await conn.execute(
        "UPDATE api_token SET revoked_at = now() WHERE label = $1 AND revoked_at IS NULL", label)
    return int(status.split()[-1])


async def list_tokens(conn: asyncpg.Connection) -> list[dict]:
    rows = await conn.fetch(
        "SELECT id, system, label, created_at, revoked_at FROM api_token ORDER BY id")
    return [dict(r) for r in rows]


async def system_for(conn: asyncpg.Connection, token: str) -> str | None:
    """The system a live token belongs to, or None."""
    return await conn.fetchval(
        "SELECT system FROM api_token WHERE token_sha256 = $1 AND revoked_at IS NULL", _hash(token))
