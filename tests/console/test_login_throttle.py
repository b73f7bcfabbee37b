"""The console login throttle: per client address and per (address, account),
kept in PostgreSQL so that it holds across gateway processes, answered with
429 + Retry-After, logged without names; and the account-wide lockout that
one address cannot trigger on its own (docs/console.md, "Login throttle and
lockout").

Real gateways on the embedded PostgreSQL, real HTTP. Different client
addresses are real: the client binds 127.0.0.2, 127.0.0.3, … (all loopback
on Linux), and the gateway sees them as the TCP peer address.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import make_mocked_request
from console_support import ADMIN_PW
from structlog.testing import capture_logs

from support import base_config

PER_ADDRESS = 4
PER_PAIR = 3
LOCKOUT = 8          # > PER_PAIR: one address alone cannot lock an account
LONG_WINDOW_MIN = 10.0
SPRAY_PASSWORDS = ("Sommer2024!!sommer", "Password123456")


def throttle_config(window_minutes: float = LONG_WINDOW_MIN) -> dict:
    cfg = base_config()
    cfg["console"] = {"secure_cookie": True,
                      "login_failures_per_address": PER_ADDRESS,
                      "login_failures_per_address_account": PER_PAIR,
                      "login_throttle_minutes": window_minutes,
                      "lockout_attempts": LOCKOUT, "lockout_minutes": 10}
    cfg["alerts"] = {"interval_s": 3600}
    return cfg


async def add_users(gw, *names: str) -> None:
    from gateway import users
    conn = await asyncpg.connect(gw.db_url)
    try:
        for n in names:
            await users.create_user(conn, n, ADMIN_PW, ["admin"])
    finally:
        await conn.close()


class From:
    """HTTP from one local source address to one gateway."""

    def __init__(self, address: str):
        self.address = address
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))

    async def login(self, gw, name: str, password: str, headers: dict | None = None):
        async with self.http.post(f"http://127.0.0.1:{gw.http_port}/console/login",
                                  json={"name": name, "password": password},
                                  headers=headers or {}) as resp:
            return resp.status, dict(resp.headers), await resp.json()

    async def close(self):
        await self.http.close()


@pytest.fixture
async def clients():
    made: list[From] = []

    def make(address: str) -> From:
        c = From(address)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


def retry_after(headers: dict) -> int:
    value = int(headers["Retry-After"])
    assert 1 <= value, headers
    return value


async def fetch(gw, sql: str, *args):
    conn = await asyncpg.connect(gw.db_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_spraying_many_accounts_from_one_address_gets_429(gateway_factory, clients):
    gw = await gateway_factory(throttle_config())
    accounts = [f"sprayed.admin{i}" for i in range(6)]
    await add_users(gw, "kari.admin", *accounts)
    sprayer = clients("127.0.0.2")
    names = accounts + ["kari.admin", "ghost.root", "ghost.labgate"]
    statuses = []
    with capture_logs() as logs:
        for i, name in enumerate(names):
            # A fresh X-Forwarded-For every time: the gateway must not believe it.
            status, headers, body = await sprayer.login(
                gw, name, SPRAY_PASSWORDS[i % 2], headers={"X-Forwarded-For": f"10.0.0.{i + 1}"})
            statuses.append(status)
            if status == 429:
                assert body["error"] == "throttled"
                assert retry_after(headers) <= LONG_WINDOW_MIN * 60 + 1
                assert headers["Cache-Control"] == "no-store"     # console headers on the 429 too
    assert statuses == [401] * PER_ADDRESS + [429] * (len(names) - PER_ADDRESS), statuses

    # The right password from the throttled address is refused as well ...
    status, headers, _ = await sprayer.login(gw, "kari.admin", ADMIN_PW)
    assert status == 429 and retry_after(headers) > 1
    # ... while another address is not affected, and no account was locked.
    status, _, _ = await clients("127.0.0.3").login(gw, "kari.admin", ADMIN_PW)
    assert status == 200
    locked = await fetch(gw, "SELECT name FROM console_user WHERE locked_until IS NOT NULL")
    assert locked == []

    # The log names the address and a counter, never a name or password that was sent.
    throttled = [e for e in logs if e["event"] == "console.login_throttled"]
    assert len(throttled) == len(names) - PER_ADDRESS
    assert all(e["peer"] == "127.0.0.2" and e["failures"] == PER_ADDRESS for e in throttled)
    assert any(e["event"] == "console.login_throttle_engaged" for e in logs)
    secrets = set(names) | set(SPRAY_PASSWORDS)
    for event in logs:
        text = " ".join(str(v) for v in event.values())
        leaked = [s for s in secrets if s in text]
        assert not leaked, (event, leaked)
    # Nor is the name stored in the throttle table (only its SHA-256).
    keys = " ".join(r["key"] for r in await fetch(gw, "SELECT key FROM console_login_throttle"))
    assert "127.0.0.2" in keys and not any(n in keys for n in names)


async def test_account_attacked_from_one_address_still_logs_in_from_another(gateway_factory, clients):
    gw = await gateway_factory(throttle_config())
    await add_users(gw, "ada")
    attacker, admin = clients("127.0.0.2"), clients("127.0.0.3")
    for _ in range(PER_PAIR):
        assert (await attacker.login(gw, "ada", "wrong password guess"))[0] == 401
    # The (attacker's address, ada) pair is throttled, the right password included ...
    status, headers, _ = await attacker.login(gw, "ada", ADMIN_PW)
    assert status == 429 and retry_after(headers) > 1
    # Hammering on (more than the account lockout would need) changes nothing:
    # the password is no longer checked, so nothing counts towards the lockout.
    for _ in range(2 * LOCKOUT):
        assert (await attacker.login(gw, "ada", "wrong password guess"))[0] == 429
    # ... but the address itself is not (fewer failures than PER_ADDRESS) ...
    await add_users(gw, "bob")
    assert (await attacker.login(gw, "bob", ADMIN_PW))[0] == 200
    # ... and ada, from her own workstation, is not locked out.
    assert (await admin.login(gw, "ada", ADMIN_PW))[0] == 200
    rows = await fetch(gw, "SELECT locked_until FROM console_user WHERE name = 'ada'")
    assert rows[0]["locked_until"] is None


async def test_many_addresses_still_lock_the_account(gateway_factory, clients):
    """The account-wide lockout stays, as the last line against guessing from
    many addresses: it needs LOCKOUT failures in a row, more than one address
    may make."""
    gw = await gateway_factory(throttle_config())
    await add_users(gw, "ada")
    failures = 0
    for n in range(2, 10):
        c = clients(f"127.0.0.{n}")
        for _ in range(PER_PAIR):
            if failures < LOCKOUT:
                assert (await c.login(gw, "ada", "wrong password guess"))[0] == 401
                failures += 1
        if failures >= LOCKOUT:
            break
    status, _, _ = await clients("127.0.0.20").login(gw, "ada", ADMIN_PW)
    assert status == 401, "locked for every address, with the same answer as a wrong password"
    rows = await fetch(gw, "SELECT locked_until > now() AS locked FROM console_user WHERE name = 'ada'")
    assert rows[0]["locked"]


async def test_throttled_address_may_log_in_again_once_the_window_has_passed(gateway_factory, clients):
    window_min = 0.1        # 6 s
    gw = await gateway_factory(throttle_config(window_min))
    await add_users(gw, "ada")
    c = clients("127.0.0.2")
    statuses = []
    for i in range(3 * PER_ADDRESS):    # bounded; normally 429 comes after PER_ADDRESS failures
        status, headers, _ = await c.login(gw, f"nobody{i}", "wrong password guess")
        statuses.append(status)
        if status == 429:
            break
    assert statuses[-1] == 429, statuses

    status, headers, _ = await c.login(gw, "ada", ADMIN_PW)
    assert status == 429
    wait = retry_after(headers)
    assert wait <= window_min * 60 + 1
    await asyncio.sleep(wait)
    deadline = time.monotonic() + 5
    while (status := (await c.login(gw, "ada", ADMIN_PW))[0]) == 429 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert status == 200, "the right password passes once Retry-After has passed"

    # Expired rows are removed (here by the next login; the retention job does it too).
    await clients("127.0.0.3").login(gw, "nobody", "wrong password guess")
    left = await fetch(gw, "SELECT key FROM console_login_throttle WHERE key LIKE 'p|127.0.0.2|%'")
    assert left == [], "the expired (address, name) rows of the guesses are gone"
    from gateway import users
    conn = await asyncpg.connect(gw.db_url)
    try:
        await conn.execute("UPDATE console_login_throttle SET expires_at = now() - interval '1 s'")
        await users.prune_sessions(conn)
        assert await conn.fetchval("SELECT count(*) FROM console_login_throttle") == 0
    finally:
        await conn.close()


async def test_throttle_holds_across_two_gateways_on_one_database(gateway_factory, clients):
    gw1 = await gateway_factory(throttle_config())
    gw2 = await gateway_factory(throttle_config())
    assert gw1.http_port != gw2.http_port and gw1.db_url == gw2.db_url
    await add_users(gw1, "ada")
    c = clients("127.0.0.2")
    for i in range(PER_ADDRESS):
        gw = (gw1, gw2)[i % 2]      # alternate: each process sees only half the failures
        assert (await c.login(gw, f"user{i}", "wrong password guess"))[0] == 401
    for gw in (gw1, gw2):
        status, headers, _ = await c.login(gw, "ada", ADMIN_PW)
        assert status == 429 and retry_after(headers) > 1
    assert (await clients("127.0.0.3").login(gw2, "ada", ADMIN_PW))[0] == 200


async def test_concurrent_guesses_cannot_overrun_the_limit(gateway_factory, clients):
    """The count is taken before the password is checked, in one statement,
    so a burst of parallel guesses gets at most PER_ADDRESS checks."""
    gw1 = await gateway_factory(throttle_config())
    gw2 = await gateway_factory(throttle_config())
    c = clients("127.0.0.2")
    results = await asyncio.gather(*(c.login((gw1, gw2)[i % 2], f"user{i}", "wrong password guess")
                                     for i in range(4 * PER_ADDRESS)))
    statuses = sorted(r[0] for r in results)
    assert statuses.count(401) <= PER_ADDRESS and statuses.count(429) >= 3 * PER_ADDRESS, statuses


@pytest.mark.parametrize("peer, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
])
def test_client_address_is_the_peer_ipv6_per_64(peer, key):
    from gateway.console.security import client_address
    req = make_mocked_request("POST", "/console/login",
                              headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"})
    assert client_address(req.clone(remote=peer)) == key
