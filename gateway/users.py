"""Console user accounts and their sessions.

Passwords are hashed with argon2id (argon2-cffi; memory-hard). There is no
default account and no default password: the first admin is made with
``labgate user create NAME --role admin`` (or ``labgate demo``, which makes a
demo admin with a fresh random password). A session is a random cookie value
whose SHA-256 alone is stored; each session has its own CSRF token, which
every state-changing request must echo in the ``X-CSRF-Token`` header.

Failed logins are throttled per client address and per (address, account
name) in the database (``console_login_throttle``, shared by every gateway
process): past the limit the address, or the pair, is refused with 429 for a
window without its password being checked. An account is locked for every
address only after more failures in a row than one address may make, so
one address can neither spray passwords over many accounts nor lock an
administrator out (docs/console.md, "Login throttle and lockout").
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


# ---- login throttle (per client address, per address + account) ------------

@dataclass(frozen=True, slots=True)
class LoginLimits:
    """The console's login settings (config.ConsoleSection)."""
    per_address: int
    per_address_account: int
    throttle_minutes: float
    lockout_attempts: int
    lockout_minutes: float

    @classmethod
    def from_config(cls, console) -> "LoginLimits":
        return cls(per_address=console.login_failures_per_address,
                   per_address_account=console.login_failures_per_address_account,
                   throttle_minutes=console.login_throttle_minutes,
                   lockout_attempts=console.lockout_attempts,
                   lockout_minutes=console.lockout_minutes)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What ``attempt_login`` decided.

    ``principal`` is set on success. ``retry_after`` (seconds) is set when the
    throttle refused the attempt without checking the password (answer 429).
    ``address_failures`` is the address's failure count in its window, for
    the log; ``throttled_now`` is True when this failure reached a limit.
    """
    principal: Principal | None
    retry_after: float | None = None
    address_failures: int = 0
    throttled_now: bool = False


def _throttle_keys(address: str, name: str) -> tuple[str, str]:
    """(address key, address + account key); the name only as a SHA-256."""
    account = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"a|{address}", f"p|{address}|{account}"


# The window starts at a key's first failure; a key whose window has passed
# and whose block (if any) has ended starts again at 1.
_STALE = "(t.window_start + make_interval(secs => $2) <= now() AND coalesce(t.blocked_until <= now(), true))"
_RESERVE = f"""
INSERT INTO console_login_throttle AS t (key, failures, window_start, expires_at)
SELECT k, 1, now(), now() + make_interval(secs => $2) FROM unnest($1::text[]) AS k ORDER BY k
ON CONFLICT (key) DO UPDATE SET
    failures      = CASE WHEN {_STALE} THEN 1 ELSE t.failures + 1 END,
    window_start  = CASE WHEN {_STALE} THEN now() ELSE t.window_start END,
    blocked_until = CASE WHEN {_STALE} THEN NULL ELSE t.blocked_until END,
    expires_at    = CASE WHEN {_STALE} THEN now() + make_interval(secs => $2)
                         ELSE greatest(t.expires_at, t.window_start + make_interval(secs => $2)) END
RETURNING key, failures
"""
_BLOCKED = ("SELECT key, failures, extract(epoch FROM blocked_until - now())::float8 AS wait"
            " FROM console_login_throttle WHERE key = ANY($1::text[]) AND blocked_until > now()")
_PRUNE_THROTTLE = ("DELETE FROM console_login_throttle WHERE key IN ("
                   " SELECT key FROM console_login_throttle WHERE expires_at < now()"
                   " ORDER BY expires_at LIMIT $1)")


async def _address_failures(conn, akey: str) -> int:
    return await conn.fetchval(
        "SELECT failures FROM console_login_throttle WHERE key = $1", akey) or 0


async def attempt_login(pool, name: str, password: str, *, address: str,
                        limits: LoginLimits) -> LoginResult:
    """A console login from ``address`` (see ``console.security.client_address``).

    1. A blocked address, or a blocked (address, name), is refused at once,
       without an argon2 verification: ``retry_after`` says for how long.
    2. Otherwise the attempt is counted against both keys *before* the
       password is checked, in one statement, so concurrent attempts from one
       address in several gateway processes cannot exceed the limit; an
       attempt over the limit is refused (and not counted).
    3. The password is checked (``login``: the account-wide lockout still
       applies). A success takes its count back from the address and clears
       the pair; a failure that reaches a limit blocks that key for one
       window, counted from now.
    """
    akey, pkey = _throttle_keys(address, name)
    window = limits.throttle_minutes * 60.0
    keys = [akey, pkey]
    async with pool.acquire() as conn:
        blocked = await conn.fetch(_BLOCKED, keys)   # read only: a refused flood writes nothing
        if blocked:
            return LoginResult(None, retry_after=max(r["wait"] for r in blocked),
                               address_failures=await _address_failures(conn, akey))
        await conn.execute(_PRUNE_THROTTLE, 100)   # keeps the table bounded between retention rounds
        counts = {r["key"]: r["failures"] for r in await conn.fetch(_RESERVE, keys, window)}
        if counts[akey] > limits.per_address or counts[pkey] > limits.per_address_account:
            # Another process counted the limit-reaching failure a moment ago,
            # or is still checking it: refuse, and take this attempt back.
            await conn.execute("UPDATE console_login_throttle SET failures = greatest(failures - 1, 0)"
                               " WHERE key = ANY($1::text[])", keys)
            wait = await conn.fetchval(
                "SELECT max(greatest(coalesce(blocked_until, window_start + make_interval(secs => $2)),"
                " now() + interval '1 second') - now()) FROM console_login_throttle"
                " WHERE key = ANY($1::text[])", keys, window)
            return LoginResult(None, retry_after=wait.total_seconds(),
                               address_failures=counts[akey] - 1)
    who = await login(pool, name, password, lockout_attempts=limits.lockout_attempts,
                      lockout_minutes=limits.lockout_minutes)
    async with pool.acquire() as conn:
        if who is not None:
            await conn.execute("UPDATE console_login_throttle SET failures = greatest(failures - 1, 0)"
                               " WHERE key = $1", akey)
            await conn.execute("DELETE FROM console_login_throttle WHERE key = $1", pkey)
            return LoginResult(who, address_failures=counts[akey] - 1)
        hit = await conn.fetch(
            "UPDATE console_login_throttle SET blocked_until = now() + make_interval(secs => $3),"
            " expires_at = greatest(expires_at, now() + make_interval(secs => $3))"
            " WHERE (key = $1 AND failures >= $4) OR (key = $2 AND failures >= $5) RETURNING key",
            akey, pkey, window, limits.per_address, limits.per_address_account)
    return LoginResult(None, address_failures=counts[akey], throttled_now=bool(hit))


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
    """Delete expired sessions and login-throttle rows that no longer matter."""
    await conn.execute("DELETE FROM console_session WHERE expires_at < now()")
    await conn.execute("DELETE FROM console_login_throttle WHERE expires_at < now()")


