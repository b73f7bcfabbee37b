"""``GET /fhir/AuditEvent``: the audit trail as a FHIR searchset, for auditors.

Search parameters: ``patient`` (a person number, or ``system|value``),
``date`` (repeatable, FHIR prefixes ``eq ge gt le lt``; a date without a time
is a day in Europe/Oslo), ``action`` (a labgate action name such as
``results.pull``), ``_count`` (≤ 1000) and ``_after`` (paging). Every search
is itself audited (``audit.read``), including the patient searched for.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from .. import audit
from ..authz import require
from ..http_api import FHIR_JSON, outcome
from .auditevent import to_audit_event
from .metrics import register_listener_refusals

OSLO = ZoneInfo("Europe/Oslo")
MAX_COUNT = 1000
_DATE = re.compile(r"^(eq|ge|gt|le|lt)?(\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?)$")


class SearchError(ValueError):
    pass


def setup(app: web.Application, gw) -> None:
    """Route module hook (gateway.app.ROUTE_MODULES)."""
    app.router.add_get("/fhir/AuditEvent", AuditSearch(gw).handle)
    register_listener_refusals(gw)


def date_bounds(value: str) -> tuple[str, datetime]:
    """(operator, bound) SQL pieces for one FHIR ``date`` search value."""
    m = _DATE.match(value)
    if not m:
        raise SearchError(f"date: {value!r} is not a FHIR date search value")
    prefix, text = m.group(1) or "eq", m.group(2)
    start, end = _interval(text)
    return {"eq": [(">=", start), ("<", end)], "ge": [(">=", start)], "gt": [(">=", end)],
            "le": [("<", end)], "lt": [("<", start)]}[prefix]


def _interval(text: str) -> tuple[datetime, datetime]:
    try:
        if "T" in text:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
            at = at if at.tzinfo else at.replace(tzinfo=OSLO)
            return at, at + timedelta(seconds=1)
        parts = [int(p) for p in text.split("-")]
        if len(parts) == 1:
            return datetime(parts[0], 1, 1, tzinfo=OSLO), datetime(parts[0] + 1, 1, 1, tzinfo=OSLO)
        if len(parts) == 2:
            y, mo = parts
            nxt = (y + 1, 1) if mo == 12 else (y, mo + 1)
            return datetime(y, mo, 1, tzinfo=OSLO), datetime(*nxt, 1, tzinfo=OSLO)
        start = datetime(*parts, tzinfo=OSLO)
        return start, start + timedelta(days=1)
    except (ValueError, OverflowError):
        raise SearchError(f"date: {text!r} is not a valid date") from None


def searched_patient(query) -> str | None:
    patient = query.get("patient")
    return patient.split("|", 1)[-1].removeprefix("Patient/") if patient else None


def build_query(query) -> tuple[str, list, int, int]:
    """SQL, arguments, count and after for the search parameters in ``query``."""
    where, args = [], []
    patient = searched_patient(query)
    if patient:
        args.append(patient)
        where.append(f"patient = ${len(args)}")
    for value in query.getall("date", []):
        for op, bound in date_bounds(value):
            args.append(bound)
            where.append(f"at {op} ${len(args)}")
    if query.get("action"):
        args.append(query["action"])
        where.append(f"action = ${len(args)}")
    try:
        count = min(MAX_COUNT, max(1, int(query.get("_count", "100"))))
        after = int(query.get("_after", "0"))
    except ValueError:
        raise SearchError("_count and _after must be integers") from None
    args.append(after)
    where.append(f"id > ${len(args)}")
    args.append(count)
    sql = ("SELECT id, at, actor_kind, actor, action, resource_type, resource_id, patient, peer,"
           f" outcome, detail FROM audit_log WHERE {' AND '.join(where)} ORDER BY id LIMIT ${len(args)}")
    return sql, args, count, after


class AuditSearch:
    def __init__(self, gw):
        self._gw = gw

    async def handle(self, request: web.Request) -> web.Response:
        who = require(request, "audit.read")
        try:
            sql, args, count, _ = build_query(request.query)
        except SearchError as e:
            return outcome(400, "SEARCH-PARAM-INVALID", str(e), issue_type="value")
        name = self._gw.config.gateway.name
        async with self._gw.pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
            await audit.record(conn, who=who, action="audit.read", resource_type="AuditEvent",
                               patient=searched_patient(request.query),
                               peer=request.remote, detail=f"returned {len(rows)}")
        base = f"{request.scheme}://{request.host}/fhir/AuditEvent"
        body = {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"fullUrl": f"{base}/{r['id']}", "resource": to_audit_event(r, gateway_name=name),
                           "search": {"mode": "match"}} for r in rows],
                "link": [{"relation": "self", "url": str(request.url)}]}
        if len(rows) == count:
            nxt = request.url.update_query({"_after": str(rows[-1]["id"]), "_count": str(count)})
            body["link"].append({"relation": "next", "url": str(nxt)})
        return web.Response(body=orjson.dumps(body), content_type=FHIR_JSON)
