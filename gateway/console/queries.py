"""Read queries behind the console: the overview and the message search.

Every query is shaped to stay fast with millions of stored messages: the
overview reads partial indexes on the outbox and the last hour of delivery
attempts; the message list uses keyset pagination (``id < after``, newest
first) with indexes from migration 0005, never OFFSET or a full count.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

PAGE_MAX = 200

_QUEUES = """
SELECT destination,
       count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'held') AS held,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_s
FROM outbox WHERE state IN ('pending', 'held') GROUP BY destination
"""
_DEAD = "SELECT destination, count(*) AS dead FROM outbox WHERE state = 'dead' GROUP BY destination"
_PER_MINUTE = """
SELECT o.destination, a.outcome,
       floor(extract(epoch FROM now() - a.attempted_at) / 60)::int AS minutes_ago, count(*) AS n
FROM delivery_attempt a JOIN outbox o ON o.id = a.outbox_id
WHERE a.attempted_at > now() - interval '1 hour'
GROUP BY 1, 2, 3
"""
_RECEIVED = """
SELECT source, status, count(*) AS n FROM message
WHERE received_at > now() - interval '24 hours' GROUP BY 1, 2
"""
_CRITICAL_OPEN = """
SELECT m.id, m.received_at, m.source, m.control_id,
       extract(epoch FROM now() - m.received_at)::float8 AS waiting_s
FROM message m LEFT JOIN critical_ack c ON c.message_id = m.id
WHERE m.critical AND m.status = 'accepted' AND c.message_id IS NULL AND m.discarded_at IS NULL
ORDER BY m.id DESC LIMIT $1
"""


async def overview(conn, config) -> dict:
    """Queue depth, oldest waiting, delivered per minute (last hour), failures and
    dead letters per destination; received per source; open critical results."""
    dests = {d.name: {"name": d.name, "type": d.type, "system": d.system, "pending": 0,
                      "held": 0, "dead": 0, "oldest_waiting_s": None, "delivered_last_hour": 0,
                      "failures_last_hour": 0, "delivered_per_minute": [0] * 60}
             for d in config.destinations}

    def dest(name):
        return dests.setdefault(name, {"name": name, "type": "?", "system": "?", "pending": 0,
                                       "held": 0, "dead": 0, "oldest_waiting_s": None,
                                       "delivered_last_hour": 0, "failures_last_hour": 0,
                                       "delivered_per_minute": [0] * 60})
    for r in await conn.fetch(_QUEUES):
        d = dest(r["destination"])
        d.update(pending=r["pending"], held=r["held"], oldest_waiting_s=r["oldest_s"])
    for r in await conn.fetch(_DEAD):
        dest(r["destination"])["dead"] = r["dead"]
    for r in await conn.fetch(_PER_MINUTE):
        d = dest(r["destination"])
        if r["outcome"] == "delivered":
            d["delivered_last_hour"] += r["n"]
            ago = min(59, max(0, r["minutes_ago"]))
            d["delivered_per_minute"][59 - ago] += r["n"]
        else:
            d["failures_last_hour"] += r["n"]
    sources: dict[str, dict] = {}
    for r in await conn.fetch(_RECEIVED):
        s = sources.setdefault(r["source"], {"source": r["source"], "accepted": 0, "rejected": 0,
                                             "unrouted": 0})
        s[r["status"]] = r["n"]
    critical = [_row(r) for r in await conn.fetch(_CRITICAL_OPEN, 20)]
    routes = [{"name": r.name, "sources": r.sources, "message_types": r.message_types, "to": r.to}
              for r in config.routes]
    return {"destinations": list(dests.values()), "sources": list(sources.values()),
            "routes": routes, "critical_open": critical}


@dataclass
class MessageFilter:
    """What the message list is searched by (all optional, combined with AND)."""
    status: str | None = None          # accepted | rejected | unrouted | dead | discarded
    source: str | None = None
    destination: str | None = None
    message_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    control_id: str | None = None
    order: str | None = None
    specimen: str | None = None
    patient: str | None = None         # national identity number: the read is audited

    def where(self) -> tuple[str, list]:
        """SQL conditions on ``m`` (message) and their arguments, numbered from $1."""
        conds, args = [], []

        def add(sql, value):
            args.append(value)
            conds.append(sql.replace("?", f"${len(args)}"))
        if self.status == "dead":
            conds.append("EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.state = 'dead')")
        elif self.status == "discarded":
            conds.append("m.discarded_at IS NOT NULL")
        elif self.status:
            add("m.status = ?", self.status)
        if self.source:
            add("m.source = ?", self.source)
        if self.destination:
            add("EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.destination = ?)",
                self.destination)
        if self.message_type:
            add("m.message_type = ?", self.message_type)
        if self.since:
            add("m.received_at >= ?", self.since)
        if self.until:
            add("m.received_at < ?", self.until)
        if self.control_id:
            add("m.control_id = ?", self.control_id)
        if self.order:
            add("m.order_number = ?", self.order)
        if self.specimen:
            add("m.specimen_number = ?", self.specimen)
        if self.patient:
            add("m.patient = ?", self.patient)
        return (" AND ".join(conds) or "TRUE"), args


_LIST_COLUMNS = """m.id, m.received_at, m.source, m.protocol, m.message_type, m.control_id, m.status,
       m.order_number, m.specimen_number, m.critical, m.discarded_at, m.replays,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('destination', o.destination, 'state', o.state)
                                  ORDER BY o.id), '[]') FROM outbox o WHERE o.message_id = m.id)::text AS outbox,
       (SELECT string_agg(DISTINCT e->>'code', ' ') FROM jsonb_array_elements(m.verdict) e
         WHERE e->>'severity' IN ('error', 'fatal')) AS rule_codes"""


async def search(conn, f: MessageFilter, *, after: int | None, limit: int) -> tuple[list[dict], int | None]:
    """One page of messages, newest first; returns (rows, id to pass as ``after`` for the next)."""
    limit = max(1, min(PAGE_MAX, limit))
    where, args = f.where()
    if after is not None:
        args.append(after)
        where += f" AND m.id < ${len(args)}"
    args.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT {_LIST_COLUMNS} FROM message m WHERE {where} ORDER BY m.id DESC LIMIT ${len(args)}",
        *args)
    page = [_row(r) for r in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


async def message_ids(conn, f: MessageFilter, limit: int) -> list[int]:
    where, args = f.where()
    args.append(limit)
    return [r["id"] for r in await conn.fetch(
        f"SELECT m.id FROM message m WHERE {where} ORDER BY m.id LIMIT ${len(args)}", *args)]


async def detail(conn, message_id: int) -> dict | None:
    """Everything about one message: content, verdict, outbox rows and every attempt."""
    row = await conn.fetchrow(
        "SELECT m.*, m.bundle::text AS bundle_text, m.verdict::text AS verdict_text"
        " FROM message m WHERE m.id = $1", message_id)
    if row is None:
        return None
    out = {k: row[k] for k in ("id", "received_at", "source", "protocol", "peer", "message_type",
                               "control_id", "status", "duplicate_of", "duplicates", "order_number",
                               "specimen_number", "critical", "discarded_at", "discard_reason",
                               "replays", "pruned_at")}
    out["patient"] = row["patient"]
    out["raw"] = bytes(row["raw"]).decode("utf-8", "replace") if row["raw"] is not None else None
    out["bundle"] = orjson.loads(row["bundle_text"]) if row["bundle_text"] else None
    out["verdict"] = orjson.loads(row["verdict_text"])
    out["outbox"] = [_row(r) for r in await conn.fetch(
        "SELECT id, destination, state, attempts, next_attempt_at, last_error, created_at, done_at"
        " FROM outbox WHERE message_id = $1 ORDER BY id", message_id)]
    out["attempts"] = [_row(r) for r in await conn.fetch(
        "SELECT a.id, a.outbox_id, o.destination, a.attempted_at, a.outcome, a.detail, a.duration_ms"
        " FROM delivery_attempt a JOIN outbox o ON o.id = a.outbox_id"
        " WHERE o.message_id = $1 ORDER BY a.id", message_id)]
    ack = await conn.fetchrow("SELECT * FROM critical_ack WHERE message_id = $1", message_id)
    out["critical_ack"] = _row(ack) if ack else None
    out["related"] = await _related(conn, row)
    return out


async def _related(conn, row) -> list[dict]:
    """Other messages about the same order or specimen (newest first, a few)."""
    if not row["order_number"] and not row["specimen_number"]:
        return []
    rows = await conn.fetch(
        "(SELECT id, received_at, source, message_type, status FROM message"
        "  WHERE order_number = $1 AND id <> $3 ORDER BY id DESC LIMIT 10)"
        " UNION "
        "(SELECT id, received_at, source, message_type, status FROM message"
        "  WHERE specimen_number = $2 AND id <> $3 ORDER BY id DESC LIMIT 10)"
        " ORDER BY id DESC LIMIT 10",
        row["order_number"], row["specimen_number"], row["id"])
    return [_row(r) for r in rows]


async def critical_list(conn, *, include_acknowledged: bool, limit: int = 100) -> list[dict]:
    ack_cond = "" if include_acknowledged else "AND c.message_id IS NULL"
    rows = await conn.fetch(
        "SELECT m.id, m.received_at, m.source, m.control_id, m.order_number, m.specimen_number,"
        " m.patient, m.bundle::text AS bundle, m.verdict::text AS verdict,"
        " c.acknowledged_by, c.phoned_to, c.phoned_at, c.note"
        " FROM message m LEFT JOIN critical_ack c ON c.message_id = m.id"
        f" WHERE m.critical AND m.status = 'accepted' {ack_cond} ORDER BY m.id DESC LIMIT $1", limit)
    out = []
    for r in rows:
        d = _row(r)
        d.pop("bundle"), d.pop("verdict")
        d["findings"] = [i.get("en") or i.get("text") or i.get("code")
                         for i in orjson.loads(r["verdict"]) if i.get("code") == "CRITICAL-VALUE"]
        d["observations"] = _critical_observations(orjson.loads(r["bundle"]) if r["bundle"] else None)
        out.append(d)
    return out


def _critical_observations(bundle: dict | None) -> list[dict]:
    if not bundle:
        return []
    obs = []
    for e in bundle.get("entry", []):
        res = e.get("resource", {})
        tags = (res.get("meta") or {}).get("tag") or []
        if res.get("resourceType") == "Observation" and any(
                t.get("system") == "urn:labgate:notification" and t.get("code") == "phone" for t in tags):
            code = ((res.get("code") or {}).get("coding") or [{}])[0]
            q = res.get("valueQuantity") or {}
            obs.append({"code": code.get("code"), "display": code.get("display"),
                        "value": q.get("value"), "unit": q.get("unit") or q.get("code")})
    return obs


def _row(r) -> dict:
    d = dict(r)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = v.isoformat()
        elif k == "outbox" and isinstance(v, str):
            d[k] = orjson.loads(v)
    return d
