"""Background jobs started with the console: retention pruning and alerts.

Retention removes message *content* (raw bytes, bundle, ACK) older than
``retention.content_days`` in small batches, each its own short transaction
that skips rows another transaction holds (``FOR UPDATE SKIP LOCKED``), so
it never blocks the hot path. Metadata (search keys, status, verdict) and
the audit trail stay.

Alerts check a few conditions every ``alerts.interval_s``; each condition
raises once while it lasts (``alert_state`` de-duplicates across processes),
as a log event ``alert.raised`` and, when configured, a webhook POST.
"""
from __future__ import annotations

import asyncio

import aiohttp
import orjson

from .. import logging as log_setup
from .. import users
from . import instruments_view

log = log_setup.get("labgate.console")

_PRUNE = """
WITH victims AS (
    SELECT id FROM message
    WHERE pruned_at IS NULL AND received_at < now() - make_interval(secs => $1)
    ORDER BY received_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE message m SET raw = NULL, bundle = NULL, ack = NULL, pruned_at = now()
FROM victims WHERE m.id = victims.id
"""


async def prune_once(pool, *, days: float, batch: int) -> int:
    """Prune one batch; returns how many messages lost their content."""
    async with pool.acquire() as conn:
        done = await conn.execute(_PRUNE, days * 86400.0, batch)
    return int(done.split()[-1])


async def prune_all(pool, *, days: float, batch: int, pause: float = 0.05) -> int:
    """Prune batch after batch until nothing old is left (pausing between batches)."""
    total = 0
    while True:
        n = await prune_once(pool, days=days, batch=batch)
        total += n
        if n < batch:
            return total
        await asyncio.sleep(pause)


async def retention_round(gw) -> int:
    """One round: prune old message content (when ``content_days`` is set), and
    delete expired console sessions (always)."""
    cfg = gw.config.retention
    n = 0
    if cfg.content_days:
        n = await prune_all(gw.pool, days=cfg.content_days, batch=cfg.batch)
        if n:
            log.info("retention.pruned", messages=n, days=cfg.content_days)
    async with gw.pool.acquire() as conn:
        await users.prune_sessions(conn)
    return n


async def retention_loop(gw) -> None:
    cfg = gw.config.retention
    while True:
        try:
            await retention_round(gw)
        except Exception as e:  # keep the loop alive; the next round retries
            log.warning("retention.failed", error=type(e).__name__)
        await asyncio.sleep(cfg.interval_s)


async def conditions(gw) -> dict[str, dict]:
    """Alert key -> detail for every condition that holds now."""
    cfg = gw.config.alerts
    found: dict[str, dict] = {}
    async with gw.pool.acquire() as conn:
        for r in await conn.fetch(
                "SELECT destination, extract(epoch FROM now() - min(created_at))::float8 AS age"
                " FROM outbox WHERE state = 'pending' GROUP BY destination"):
            if r["age"] > cfg.oldest_waiting_minutes * 60:
                found[f"queue-old:{r['destination']}"] = {
                    "kind": "queue_old", "destination": r["destination"],
                    "oldest_waiting_s": round(r["age"])}
        for r in await conn.fetch(
                "SELECT id, destination FROM outbox WHERE state = 'dead' ORDER BY id DESC LIMIT 100"):
            found[f"dead:{r['id']}"] = {"kind": "dead_letter", "destination": r["destination"],
                                        "outbox_id": r["id"]}
        for r in await conn.fetch(
                "SELECT m.id FROM message m LEFT JOIN critical_ack c ON c.message_id = m.id"
                " WHERE m.critical AND m.status = 'accepted' AND c.message_id IS NULL"
                " AND m.discarded_at IS NULL AND m.received_at < now() - make_interval(secs => $1)"
                " ORDER BY m.id DESC LIMIT 100", cfg.critical_unacknowledged_minutes * 60):
            found[f"critical:{r['id']}"] = {"kind": "critical_unacknowledged", "message_id": r["id"]}
    for inst in await instruments_view.locked(gw):
        found[f"instrument-locked:{inst['name']}"] = {"kind": "instrument_locked", **inst}
    return found


async def check_once(gw, session: aiohttp.ClientSession | None) -> list[dict]:
    """Raise what is new, clear what has passed; returns the alerts raised now."""
    now = await conditions(gw)
    async with gw.pool.acquire() as conn:
        new = await conn.fetch(
            "INSERT INTO alert_state (key, detail) SELECT k, d FROM unnest($1::text[], $2::text[])"
            " AS t(k, d) ON CONFLICT (key) DO NOTHING RETURNING key",
            list(now), [orjson.dumps(v).decode() for v in now.values()])
        await conn.execute("DELETE FROM alert_state WHERE NOT (key = ANY($1::text[]))", list(now))
    raised = [{"key": r["key"], **now[r["key"]]} for r in new]
    url = gw.config.alerts.webhook_url
    for alert in raised:
        log.warning("alert.raised", **alert)
        if url and session is not None:
            await _post(session, url, alert)
    return raised


async def _post(session: aiohttp.ClientSession, url: str, alert: dict) -> None:
    try:
        async with session.post(url, data=orjson.dumps({"source": "labgate", "alert": alert}),
                                headers={"Content-Type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status >= 300:
                log.warning("alert.webhook_refused", status=resp.status, key=alert["key"])
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        log.warning("alert.webhook_failed", error=type(e).__name__, key=alert["key"])


async def alerts_loop(gw) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await check_once(gw, session)
            except Exception as e:  # keep the loop alive; the next round retries
                log.warning("alerts.failed", error=type(e).__name__)
            await asyncio.sleep(gw.config.alerts.interval_s)
