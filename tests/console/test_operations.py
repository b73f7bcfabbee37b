"""Retention pruning, alerts (log + webhook), and the CLI that makes users."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from aiohttp import web
from console_support import ADMIN_PW, glucose

from support import base_config, oru_r01, to_toml


async def test_retention_prunes_content_and_keeps_metadata_and_audit(console):
    from gateway.console.jobs import prune_all
    await console.send(*[oru_r01(f"RT-{i}") for i in range(5)], oru_r01("RT-NEW"))
    ada = await console.client("ada", ADMIN_PW)
    await ada.get("/api/admin/messages?patient=13116900216")     # leaves an audit row
    conn = await console.db()
    try:
        await conn.execute("UPDATE message SET received_at = now() - interval '40 days'"
                           " WHERE control_id LIKE 'RT-_'")
        audit_before = await conn.fetchval("SELECT count(*) FROM audit_log")
        pruned = await prune_all(console.gw.pool, days=30, batch=2, pause=0)
        rows = {r["control_id"]: r for r in await conn.fetch(
            "SELECT control_id, raw, bundle, ack, pruned_at, patient, order_number, status, verdict"
            " FROM message")}
        audit_after = await conn.fetchval("SELECT count(*) FROM audit_log")
    finally:
        await conn.close()
    assert pruned == 5
    for i in range(5):
        r = rows[f"RT-{i}"]
        assert r["raw"] is None and r["bundle"] is None and r["ack"] is None and r["pruned_at"]
        assert (r["patient"], r["order_number"], r["status"]) == ("13116900216", "ORD-1", "accepted")
    assert rows["RT-NEW"]["raw"] is not None and rows["RT-NEW"]["pruned_at"] is None
    assert audit_after == audit_before
    # the console still lists a pruned message and says its content is gone
    body = await (await ada.get("/api/admin/messages?control_id=RT-0")).json()
    detail = await (await ada.get(f"/api/admin/messages/{body['messages'][0]['id']}")).json()
    assert detail["raw"] is None and detail["pruned_at"] and detail["order_number"] == "ORD-1"
    again = await prune_all(console.gw.pool, days=30, batch=2, pause=0)
    assert again == 0


async def test_alerts_raise_once_per_condition_to_log_and_webhook(console):
    from gateway.console import jobs
    got: list[dict] = []

    async def hook(request):
        got.append(await request.json())
        return web.json_response({"ok": True})
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        console.receiver.ack_code = "AR"
        await console.send(oru_r01("AL-1"), glucose("AL-CRIT"))
        conn = await console.db()
        try:
            for _ in range(150):
                if await conn.fetchval("SELECT count(*) FROM outbox WHERE state = 'dead'") == 2:
                    break
                await asyncio.sleep(0.1)
            await conn.execute("UPDATE message SET received_at = now() - interval '2 hours'"
                               " WHERE control_id = 'AL-CRIT'")
            await conn.execute("UPDATE outbox SET created_at = now() - interval '2 hours'"
                               " WHERE destination = 'ehr-pull'")
        finally:
            await conn.close()
        gw = console.gw
        cfg = gw.config.alerts.model_copy(update={"webhook_url": f"http://127.0.0.1:{port}/hook",
                                                  "oldest_waiting_minutes": 30,
                                                  "critical_unacknowledged_minutes": 30})
        gw.config = gw.config.model_copy(update={"alerts": cfg})
        import aiohttp
        async with aiohttp.ClientSession() as session:
            raised = await jobs.check_once(gw, session)
            kinds = sorted(a["kind"] for a in raised)
            assert kinds == ["critical_unacknowledged", "dead_letter", "dead_letter"]
            assert sorted(g["alert"]["kind"] for g in got) == kinds
            assert all(g["source"] == "labgate" for g in got)
            assert "13116900216" not in json.dumps(got), "no patient id leaves in an alert"
            assert await jobs.check_once(gw, session) == [], "a lasting condition alerts once"
            # acknowledging the critical result clears it; a new one would alert again
            ada = await console.client("ada", ADMIN_PW)
            crit = (await (await ada.get("/api/admin/critical")).json())["critical"][0]
            await ada.post(f"/api/admin/critical/{crit['id']}/ack", {"phoned_to": "Dr. X"})
            assert await jobs.check_once(gw, session) == []
        conn = await console.db()
        try:
            keys = {r["key"] for r in await conn.fetch("SELECT key FROM alert_state")}
        finally:
            await conn.close()
        assert not any(k.startswith("critical:") for k in keys)
    finally:
        await runner.cleanup()


async def test_queue_age_alert(console):
    from gateway.console import jobs
    console.receiver.ack_code = None      # the destination never answers: rows stay pending
    await console.send(oru_r01("QA-1"))
    conn = await console.db()
    try:
        await conn.execute("UPDATE outbox SET created_at = now() - interval '1 hour'"
                           " WHERE destination = 'lis-mllp'")
    finally:
        await conn.close()
    found = await jobs.conditions(console.gw)
    assert found["queue-old:lis-mllp"]["oldest_waiting_s"] >= 3600
    assert not any(k.startswith("queue-old:ehr-pull") for k in found), "held rows are not late"


def _cli(args, env, stdin=None):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_cli_user_create_and_demo_admin(db_url, tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(to_toml(base_config()), encoding="utf-8")
    env = {**os.environ, "LABGATE_DATABASE_URL": db_url, "LABGATE_HOME": str(tmp_path)}
    env.pop("LABGATE_USER_PASSWORD", None)
    r = await asyncio.to_thread(_cli, ["user", "--config", str(cfg), "create", "root-admin", "--role",
                                       "admin", "--password-stdin"], env, "a long enough secret\n")
    assert r.returncode == 0, r.stderr
    r = await asyncio.to_thread(_cli, ["user", "--config", str(cfg), "create", "weak", "--role", "admin",
                                       "--password-stdin"], env, "short\n")
    assert r.returncode == 2 and "at least 12" in r.stderr
    r = await asyncio.to_thread(_cli, ["user", "--config", str(cfg), "create", "env-user", "--role",
                                       "auditor"], {**env, "LABGATE_USER_PASSWORD": "from the environment"})
    assert r.returncode == 0, r.stderr
    import asyncpg

    from gateway import users
    from gateway.cli import _demo_admin
    conn = await asyncpg.connect(db_url)
    try:
        rows = {r["name"]: r for r in await conn.fetch("SELECT name, roles, password_hash FROM console_user")}
        assert set(rows) == {"root-admin", "env-user"}
        assert rows["root-admin"]["password_hash"].startswith("$argon2id$")
        assert "a long enough secret" not in rows["root-admin"]["password_hash"]
        first = await _demo_admin(conn)
        second = await _demo_admin(conn)
    finally:
        await conn.close()
    assert first["user"] == second["user"] == "console-admin"
    assert first["password"] != second["password"] and len(second["password"]) >= 20

    class Pool:   # users.login takes a pool; one connection per acquire
        def acquire(self):
            return _Conn(db_url)
    ok = await users.login(Pool(), "console-admin", second["password"], lockout_attempts=5, lockout_minutes=1)
    old = await users.login(Pool(), "console-admin", first["password"], lockout_attempts=5, lockout_minutes=1)
    assert ok is not None and ok.has("admin") and old is None


class _Conn:
    def __init__(self, url):
        self.url = url

    async def __aenter__(self):
        import asyncpg
        self.conn = await asyncpg.connect(self.url)
        return self.conn

    async def __aexit__(self, *exc):
        await self.conn.close()


async def test_retention_round_deletes_expired_console_sessions(console):
    from gateway import users
    from gateway.console.jobs import retention_round
    pool = console.gw.pool
    async with pool.acquire() as conn:
        await users.create_user(conn, "olde", "a long enough password", ["admin"])
        await users.start_session(conn, "olde", minutes=-1, peer=None)     # already expired
        await users.start_session(conn, "olde", minutes=60, peer=None)
    before = await pool.fetchval("SELECT count(*) FROM console_session")
    await retention_round(console.gw)
    assert await pool.fetchval("SELECT count(*) FROM console_session WHERE expires_at < now()") == 0
    assert await pool.fetchval("SELECT count(*) FROM console_session") == before - 1
