"""Console user accounts and their sessions.

Passwords are hashed with argon2id (argon2-cffi; memory-hard). There is no
default account and no default password: the first admin is made with
``labgate user create NAME --role admin`` (or ``labgate demo``, which makes a
demo admin with a fresh random password). A session is a random cookie value
whose SHA-256 alone is stored; each session has its own CSRF token, which
every state-changing request must echo in the ``X-CSRF-Token`` header.
Repeated failed logins lock the account for a while.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .authz import Principal

COOKIE = "labgate_session"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD = 12
ROLES = ("admin", "auditor")

_hasher = PasswordHasher()   # argon2id, library defaults (64 MiB, 3 passes)
# Verified against for unknown names, so a wrong name costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: datetime


SESSION = web.RequestKey("console_session", Session)


class UserError(ValueError):
    """A user cannot be created as asked (the message says why)."""


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must be at least {MIN_PASSWORD} characters")


async def create_user(conn, name: str, password: str, roles: list[str]) -> int:
    """Create an account; raises UserError for a weak password, unknown role or taken name."""
    check_password(password)
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise UserError(f"roles must be some of {', '.join(ROLES)}")
    if not name or len(name) > 64 or not name.isprintable() or " " in name:
        raise UserError("the name must be 1-64 printable characters without spaces")
    pw_hash = await asyncio.to_thread(_hasher.hash, password)
    try:
        return await conn.fetchval(
            "INSERT INTO console_user (name, password_hash, roles) VALUES ($1, $2, $3) RETURNING id",
            name, pw_hash, list(roles))
    except asyncpg.UniqueViolationError:
        raise UserError(f"a user named {name!r} exists already") from None


async def set_password(conn, name: str, password: str) -> bool:
    check_password(password)
    pw_hash = await asyncio.to_thread(_hasher.hash, password)
    done = await conn.execute(
        "UPDATE console_user SET password_hash = $2, failed_logins = 0, locked_until = NULL"
        " WHERE name = $1", name, pw_hash)
    return done.endswith(" 1")


async def _verify(pw_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, pw_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def login(pool, name: str, password: str, *, lockout_attempts: int,
                lockout_minutes: float) -> Principal | None:
    """The user if name and password match and the account is not locked.

    Each failure counts; ``lockout_attempts`` failures in a row lock the
    account for ``lockout_minutes`` (a right password is refused meanwhile).
    """
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, name, password_hash, roles, locked_until, disabled_at,"
            " locked_until > now() AS locked FROM console_user WHERE name = $1", name)
    if row is None:
        await _verify(_DUMMY_HASH, password)
        return None
    ok = await _verify(row["password_hash"], password)
    async with pool.acquire() as conn:
        if ok and not row["locked"] and row["disabled_at"] is None:
            await conn.execute("UPDATE console_user SET failed_logins = 0, locked_until = NULL"
                               " WHERE id = $1", row["id"])
            return Principal("user", row["name"], frozenset(row["roles"]))
        if not row["locked"]:
            await conn.execute(
                "UPDATE console_user SET"
                " locked_until = CASE WHEN failed_logins + 1 >= $2"
                "   THEN now() + make_interval(secs => $3) ELSE NULL END,"
                " failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END"
                " WHERE id = $1", row["id"], lockout_attempts, lockout_minutes * 60.0)
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def start_session(conn, name: str, *, minutes: float, peer: str | None) -> tuple[str, str]:
    """A new session for ``name``: (cookie value, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO console_session (token_sha256, user_id, csrf_token, expires_at, peer)"
        " SELECT $1, id, $3, now() + make_interval(secs => $4), $5 FROM console_user WHERE name = $2",
        _digest(token), name, csrf, minutes * 60.0, peer)
    return token, csrf


async def end_session(conn, token: str) -> None:
    await conn.execute("DELETE FROM console_session WHERE token_sha256 = $1", _digest(token))


async def session_for(conn, token: str) -> Session | None:
    """The live session behind a cookie value, or None (unknown, expired, user disabled)."""
    if not token or len(token) > 128:
        return None
    row = await conn.fetchrow(
        "SELECT u.name, u.roles, s.csrf_token, s.expires_at FROM console_session s"
        " JOIN console_user u ON u.id = s.user_id"
        " WHERE s.token_sha256 = $1 AND s.expires_at > now() AND u.disabled_at IS NULL",
        _digest(token))
    if row is None:
        return None
    return Session(Principal("user", row["name"], frozenset(row["roles"])),
                   row["csrf_token"], row["expires_at"])


async def principal_from_cookie(pool, request: web.Request) -> Principal | None:
    """Used by the HTTP auth middleware: the console user of this request, if any."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    async with pool.acquire() as conn:
        session = await session_for(conn, token)
    if session is None:
        return None
    request[SESSION] = session
    return session.principal


def csrf_ok(request: web.Request) -> bool:
    """True if the request carries its session's CSRF token."""
    session = request.get(SESSION)
    sent = request.headers.get(CSRF_HEADER, "")
    return session is not None and bool(sent) and hmac.compare_digest(sent, session.csrf)


async def prune_sessions(conn) -> None:
    await conn.execute("DELETE FROM console_session WHERE expires_at < now()")


