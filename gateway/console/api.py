"""The /api/admin JSON API and the console's login endpoints.

Every handler asks ``authz.require`` (admin.read or admin.write); a console
user reaches it through the session cookie, a system with the admin role
through its bearer token. Reads that can show patient data are audited, and
so is every action (with the reason the administrator gave).
"""
from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone

import orjson
from aiohttp import web

from .. import audit, users
from .. import logging as log_setup
from ..authz import require
from ..security.jsonsafe import JsonLimitError, load_json
from ..security.metrics import limit_counter
from . import actions, instruments_view, queries
from .queries import MessageFilter
from .security import HEADERS, client_address

log = log_setup.get("labgate.console")
BULK_MAX = 1000
_STATUSES = {"accepted", "rejected", "unrouted", "dead", "discarded"}


def _json(body, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body, default=str),
                        content_type="application/json")


def _bad(detail: str, status: int = 400) -> web.Response:
    return _json({"error": "invalid", "detail": detail}, status)


async def _body(request: web.Request) -> dict:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text='{"error": "send application/json"}',
                                           content_type="application/json")
    try:
        data = load_json(await request.read())      # the same size and depth limits as the API
    except JsonLimitError as e:
        raise web.HTTPBadRequest(text=orjson.dumps({"error": e.code, "detail": str(e)}).decode(),
                                 content_type="application/json")
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}', content_type="application/json")
    return data


def _reason(data: dict) -> str:
    reason = str(data.get("reason") or "").strip()
    if not reason or len(reason) > 500:
        raise web.HTTPBadRequest(text='{"error": "a reason (1-500 characters) is required"}',
                                 content_type="application/json")
    return reason


class AdminApi:
    def __init__(self, gw):
        self.gw = gw
        self._streams: set[asyncio.Task] = set()

    async def close_streams(self) -> None:
        """On shutdown: end the open event streams, so stopping never waits on a browser."""
        for t in list(self._streams):
            t.cancel()

    @property
    def pool(self):
        return self.gw.pool

    # ---- login -----------------------------------------------------------

    async def login(self, request: web.Request):
        data = await _body(request)   # JSON only: a cross-site form cannot post it
        name, password = str(data.get("name", "")), str(data.get("password", ""))
        cfg = self.gw.config.console
        address = client_address(request)
        result = await users.attempt_login(self.pool, name, password, address=address,
                                           limits=users.LoginLimits.from_config(cfg))
        if result.retry_after is not None:
            # Throttled: the password was not checked. The log names the address and
            # its failure count only, never the name or password that was sent.
            limit_counter(self.gw.metrics).labels("login", "console").inc()
            wait = max(1, math.ceil(result.retry_after))
            log.info("console.login_throttled", peer=address, failures=result.address_failures,
                     retry_after_s=wait)
            return web.Response(
                status=429, content_type="application/json", headers={"Retry-After": str(wait)},
                body=orjson.dumps({"error": "throttled",
                                   "detail": f"too many failed logins from this address; retry in {wait} s"}))
        who = result.principal
        async with self.pool.acquire() as conn:
            if who is None:
                detail = ("login throttle engaged: this failure reached the limit for the"
                          " address, or for the address and this name" if result.throttled_now else None)
                await audit.record(conn, who=None, action="console.login", outcome="denied",
                                   resource_type="User", resource_id=name[:64], peer=request.remote,
                                   detail=detail)
                log.info("console.login_failed", peer=address, failures=result.address_failures)
                if result.throttled_now:
                    log.warning("console.login_throttle_engaged", peer=address,
                                failures=result.address_failures)
                return _json({"error": "login failed",
                              "detail": "wrong name or password, or the account is locked"}, 401)
            token, csrf = await users.start_session(conn, who.name, minutes=cfg.session_minutes,
                                                    peer=request.remote)
            await audit.record(conn, who=who, action="console.login", resource_type="User",
                               resource_id=who.name, peer=request.remote)
        resp = _json({"name": who.name, "roles": sorted(who.roles), "csrf": csrf})
        resp.set_cookie(users.COOKIE, token, max_age=int(cfg.session_minutes * 60), path="/",
                        secure=cfg.secure_cookie, httponly=True, samesite="Strict")
        log.info("console.login", user=who.name)
        return resp

    async def logout(self, request: web.Request):
        token = request.cookies.get(users.COOKIE)
        if token:
            async with self.pool.acquire() as conn:
                await users.end_session(conn, token)
        resp = _json({"status": "logged out"})
        resp.del_cookie(users.COOKIE, path="/")
        return resp

    async def session(self, request: web.Request):
        who = require(request, "admin.read")
        s = request.get(users.SESSION)
        return _json({"name": who.name, "kind": who.kind, "roles": sorted(who.roles),
                      "csrf": s.csrf if s else None})

    # ---- overview --------------------------------------------------------

    async def _overview(self) -> dict:
        async with self.pool.acquire() as conn:
            data = await queries.overview(conn, self.gw.config)
        data["listeners"] = _listeners(self.gw)
        data["instruments"] = await instruments_view.locked(self.gw)
        data["generated_at"] = datetime.now(timezone.utc).isoformat()
        return data

    async def overview(self, request: web.Request):
        require(request, "admin.read")
        return _json(await self._overview())

    async def events(self, request: web.Request):
        """Server-sent events: the overview every few seconds until the browser leaves."""
        require(request, "admin.read")
        resp = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
        task = asyncio.current_task()
        self._streams.add(task)
        try:
            await resp.prepare(request)
            await resp.write(b": connected\n\n")   # the page has just fetched /overview itself
            while True:
                await asyncio.sleep(self.gw.console_event_interval)
                body = orjson.dumps(await self._overview(), default=str)
                await resp.write(b"event: overview\ndata: " + body + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(task)
        return resp

    # ---- messages --------------------------------------------------------

    async def messages(self, request: web.Request):
        who = require(request, "admin.read")
        try:
            f = _filter(request.query)
            after = int(request.query["after"]) if request.query.get("after") else None
            limit = int(request.query.get("limit", "50"))
        except ValueError as e:
            return _bad(str(e))
        async with self.pool.acquire() as conn:
            rows, next_after = await queries.search(conn, f, after=after, limit=limit)
            if f.patient:
                await audit.record(conn, who=who, action="message.search_patient",
                                   resource_type="Message", patient=f.patient, peer=request.remote,
                                   detail=f"{len(rows)} found")
        return _json({"messages": rows, "next_after": next_after})

    async def message(self, request: web.Request):
        who = require(request, "admin.read")
        mid = _id(request)
        async with self.pool.acquire() as conn:
            data = await queries.detail(conn, mid)
            if data is None:
                return _json({"error": "not found"}, 404)
            await audit.record(conn, who=who, action="message.read", resource_type="Message",
                               resource_id=str(mid), patient=data["patient"], peer=request.remote)
        return _json(data)

    async def _act(self, request: web.Request, fn):
        who = require(request, "admin.write")
        mid = _id(request)
        reason = _reason(await _body(request))
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                out = await fn(conn, mid, who, reason, request.remote)
        except actions.ActionRefused as e:
            return _json({"error": "refused", "detail": str(e)}, 409)
        out.committed(self.gw.validator)
        log.info("console.action", action=out.action, message_id=mid, result=out.result, user=who.name)
        return _json(out.to_dict())

    async def replay(self, request):
        return await self._act(request, lambda c, m, w, r, p: actions.replay(self.gw, c, m, w, r, p))

    async def retry(self, request):
        return await self._act(request, actions.retry_now)

    async def discard(self, request):
        return await self._act(request, actions.discard)

    async def bulk_replay(self, request: web.Request):
        """Replay every message matching a filter (at most BULK_MAX), each in its own transaction."""
        who = require(request, "admin.write")
        data = await _body(request)
        reason = _reason(data)
        try:
            f = _filter({k: str(v) for k, v in (data.get("filter") or {}).items() if v not in (None, "")})
        except ValueError as e:
            return _bad(str(e))
        if f.status not in ("rejected", "dead"):
            return _bad("bulk replay needs filter.status rejected or dead")
        async with self.pool.acquire() as conn:
            ids = await queries.message_ids(conn, f, BULK_MAX)
        results = []
        for mid in ids:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    out = await actions.replay(self.gw, conn, mid, who, reason, request.remote)
                out.committed(self.gw.validator)
                results.append(out.to_dict())
            except actions.ActionRefused as e:
                results.append({"message_id": mid, "action": "replay", "result": "refused",
                                "detail": str(e)})
        async with self.pool.acquire() as conn:
            await audit.record(conn, who=who, action="message.bulk_replay", resource_type="Message",
                               peer=request.remote,
                               detail=f"reason: {reason}; {len(ids)} messages")
        summary: dict[str, int] = {}
        for r in results:
            summary[r["result"]] = summary.get(r["result"], 0) + 1
        return _json({"count": len(results), "summary": summary, "results": results})

    async def reload_tables(self, request: web.Request):
        """Re-read the rule tables (after a bioengineer fixed one) without a restart."""
        who = require(request, "admin.write")
        reason = _reason(await _body(request))
        from ..config import ConfigError
        from ..validator import load_rule_tables
        try:
            tables = await asyncio.to_thread(load_rule_tables, self.gw.config)
        except ConfigError as e:
            return _json({"error": "refused", "detail": str(e)}, 409)
        self.gw.validator.reload(tables)
        async with self.pool.acquire() as conn:
            await audit.record(conn, who=who, action="tables.reload", peer=request.remote,
                               detail=f"reason: {reason}")
        log.info("console.tables_reloaded", user=who.name)
        return _json({"status": "reloaded"})

    # ---- instruments and critical results --------------------------------

    async def instruments(self, request: web.Request):
        require(request, "admin.read")
        return _json(await instruments_view.listing(self.gw))

    async def critical(self, request: web.Request):
        who = require(request, "admin.read")
        include = request.query.get("all") == "1"
        async with self.pool.acquire() as conn, conn.transaction():   # one commit for the audit rows
            rows = await queries.critical_list(conn, include_acknowledged=include)
            for r in rows:
                await audit.record(conn, who=who, action="critical.read", resource_type="Message",
                                   resource_id=str(r["id"]), patient=r["patient"], peer=request.remote)
        for r in rows:
            r.pop("patient")   # the list shows numbers and values, not who
        return _json({"critical": rows})

    async def critical_ack(self, request: web.Request):
        who = require(request, "admin.write")
        mid = _id(request)
        data = await _body(request)
        phoned_to = str(data.get("phoned_to") or "").strip()
        if not phoned_to or len(phoned_to) > 200:
            return _bad("phoned_to (who was phoned, 1-200 characters) is required")
        try:
            phoned_at = _time(str(data.get("phoned_at") or "")) or datetime.now(timezone.utc)
        except ValueError as e:
            return _bad(str(e))
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await actions.acknowledge_critical(conn, mid, who, phoned_to=phoned_to,
                                                   phoned_at=phoned_at,
                                                   note=str(data.get("note") or "")[:500],
                                                   peer=request.remote)
        except actions.ActionRefused as e:
            return _json({"error": "refused", "detail": str(e)}, 409)
        return _json({"message_id": mid, "acknowledged_by": who.name, "phoned_to": phoned_to,
                      "phoned_at": phoned_at.isoformat()})


def _listeners(gw) -> list[dict]:
    out = []
    for name, server in gw.listeners.items():
        try:
            out.append({"name": name, "port": getattr(server, "port", None),
                        "stats": server.stats() if hasattr(server, "stats") else {},
                        "peers": server.peers() if hasattr(server, "peers") else []})
        except RuntimeError:    # stopping: the listener is gone
            out.append({"name": name, "port": None, "stats": {}, "peers": []})
    return out


def _id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text='{"error": "not found"}', content_type="application/json")


def _time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _filter(q) -> MessageFilter:
    status = q.get("status") or None
    if status and status not in _STATUSES:
        raise ValueError(f"status must be one of {', '.join(sorted(_STATUSES))}")
    return MessageFilter(
        status=status, source=q.get("source") or None, destination=q.get("destination") or None,
        message_type=q.get("type") or q.get("message_type") or None,
        since=_time(q.get("since", "")), until=_time(q.get("until", "")),
        control_id=q.get("control_id") or None, order=q.get("order") or None,
        specimen=q.get("specimen") or None, patient=q.get("patient") or None)
