"""The gateway's HTTP surface (aiohttp): health, metrics, FHIR metadata, pull.

Every /fhir request except /fhir/metadata carries a bearer token; the
caller becomes a ``Principal`` on the request (``request[PRINCIPAL]``, gateway/authz.py)
and each handler checks what that system may see. Errors under /fhir are
FHIR OperationOutcomes.
"""
from __future__ import annotations

import asyncpg
import orjson
from aiohttp import web

from . import audit, tokens
from . import logging as log_setup
from .authz import PRINCIPAL, Forbidden, Principal, require
from .capability import capability_statement
from .config import Config
from .metrics import Metrics
from .security import headers as security_headers
from .security.metrics import limit_counter
from .security.ratelimit import RateLimiter, caller_key, retry_after
from .security.tls import ClientCertMap

log = log_setup.get("labgate.http")
FHIR_JSON = "application/fhir+json"
MAX_PAGE = 500

_PULL = """
SELECT o.id, m.bundle::text AS bundle, ARRAY(SELECT audit_patients(m.bundle)) AS patients
FROM outbox o JOIN message m ON m.id = o.message_id
WHERE o.destination = $1 AND o.state = 'held' AND o.id > $2
ORDER BY o.id LIMIT $3
"""


def outcome(status: int, code: str, text: str, *, severity: str = "error",
            issue_type: str = "processing", headers: dict | None = None) -> web.Response:
    body = {"resourceType": "OperationOutcome", "issue": [{
        "severity": severity, "code": issue_type, "details": {
            "coding": [{"system": "urn:labgate:rule", "code": code}], "text": text}}]}
    return web.Response(status=status, body=orjson.dumps(body), content_type=FHIR_JSON,
                        headers=headers)


def _fhir(body: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type=FHIR_JSON)


def _is_protected(path: str) -> bool:
    return (path == "/fhir" or (path.startswith("/fhir/") and path != "/fhir/metadata")
            or path.startswith("/api/"))


class HttpApi:
    """Core routes; other modules add theirs with ``setup(app, gateway)``."""

    def __init__(self, *, pool: asyncpg.Pool, config: Config, metrics: Metrics, readiness):
        self._pool = pool
        self._config = config
        self._metrics = metrics
        self._ready = readiness   # callable -> (bool, detail dict)
        self._roles = {s.name: frozenset(s.roles) for s in config.systems}
        self._certs = ClientCertMap(config.http.tls.clients if config.http.tls else [])
        self._limiter = RateLimiter(config.http.requests_per_minute)
        self._limit_exceeded = limit_counter(metrics)
        self.app = web.Application(middlewares=[self._errors, self._auth],
                                   client_max_size=config.http.max_body_bytes)
        security_headers.install(self.app)
        self.app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
            web.get("/fhir/metadata", self.metadata),
            web.get("/fhir/Bundle", self.pull),
            web.post("/fhir/Bundle/{id}/$taken", self.taken),
        ])

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except Forbidden as e:
            who = request.get(PRINCIPAL)
            log.info("http.forbidden", path=request.path, who=who.name if who else None)
            try:
                await audit.record(self._pool, who=who, action=e.action or "http.forbidden",
                                   outcome="denied", peer=request.remote,
                                   detail=f"{request.method} {request.path}")
            except (asyncpg.PostgresError, OSError) as err:   # the refusal stands regardless
                log.warning("audit.denied_not_recorded", error=type(err).__name__)
            if request.path.startswith("/fhir"):
                return outcome(403, "FORBIDDEN", e.reason, issue_type="forbidden")
            return web.json_response({"error": "forbidden", "detail": e.reason}, status=403)
        except web.HTTPRequestEntityTooLarge:   # a chunked body over the limit
            return self._too_large(request)

    def _too_large(self, request: web.Request) -> web.Response:
        self._limit_exceeded.labels("body_size", "http").inc()
        text = f"The request body exceeds {self._config.http.max_body_bytes} bytes"
        if request.path.startswith("/fhir"):
            return outcome(413, "BODY-TOO-LARGE", text, issue_type="too-costly")
        return web.json_response({"error": "too_large", "detail": text}, status=413)

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if (request.content_length or 0) > self._config.http.max_body_bytes:
            return self._too_large(request)     # before any handler reads it
        if _is_protected(request.path) and (refused := self._rate_limited(request)):
            return refused
        who = await self._authenticate(request)
        if who is not None:
            request[PRINCIPAL] = who
        elif _is_protected(request.path):
            if request.headers.get("Authorization", "").startswith("Bearer "):
                log.info("http.auth_refused", path=request.path, peer=request.remote)
                return outcome(401, "AUTH-INVALID", "The token is unknown or revoked", issue_type="login")
            return outcome(401, "AUTH-MISSING", "A bearer token is required", issue_type="login")
        return await handler(request)

    def _rate_limited(self, request: web.Request) -> web.Response | None:
        """429 with Retry-After once the caller's requests per minute are used up."""
        _, fp = self._certs.system_for(request.transport) if request.secure else (None, None)
        wait = self._limiter.check(caller_key(request, fp))
        if not wait:
            return None
        self._limit_exceeded.labels("rate", "http").inc()
        log.warning("http.rate_limited", path=request.path, peer=request.remote)
        return outcome(429, "RATE-LIMITED",
                       f"More than {self._limiter.per_minute} requests per minute; retry later",
                       issue_type="throttled", headers={"Retry-After": retry_after(wait)})

    async def _authenticate(self, request: web.Request) -> Principal | None:
        """The caller: a system by client certificate or bearer token (console sessions add users here)."""
        if request.secure and self._certs:
            system, _ = self._certs.system_for(request.transport)
            if system in self._roles:
                return Principal("system", system, self._roles[system])
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            from . import users   # console session cookie -> Principal("user", name, roles)
            return await users.principal_from_cookie(self._pool, request)
        async with self._pool.acquire() as conn:
            system = await tokens.system_for(conn, auth[7:].strip())
        if system is None or system not in self._roles:
            return None
        return Principal("system", system, self._roles[system])

    async def healthz(self, _request):
        return web.json_response({"status": "ok"})

    async def readyz(self, _request):
        ok, detail = await self._ready()
        return web.json_response({"status": "ready" if ok else "not ready", **detail},
                                 status=200 if ok else 503)

    async def metrics(self, _request):
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT destination, state, count(*) AS n,"
                " extract(epoch FROM now() - min(created_at))::float8 AS oldest"
                " FROM outbox WHERE state IN ('pending', 'held', 'dead')"
                " GROUP BY destination, state")
        self._metrics.set_outbox_snapshot([(r["destination"], r["state"], r["n"], r["oldest"]) for r in rows])
        return web.Response(body=self._metrics.render(),
                            content_type="text/plain", charset="utf-8")

    async def metadata(self, request):
        return _fhir(capability_statement(f"{request.scheme}://{request.host}/fhir"))

    def _pull_destination(self, request: web.Request, name: str | None):
        """The pull destination named, if the calling system may read it."""
        if not name:
            return None, outcome(400, "SEARCH-DESTINATION-REQUIRED",
                                 "The destination search parameter is required", issue_type="required")
        dest = next((d for d in self._config.destinations if d.name == name and d.type == "pull"), None)
        if dest is None or dest.system != request[PRINCIPAL].name:
            # Same answer for "no such destination" and "not yours": no probing.
            return None, outcome(403, "FORBIDDEN", "This system may not read that destination",
                                 issue_type="forbidden")
        return dest, None

    async def pull(self, request: web.Request):
        who = require(request, "results.pull")
        dest, err = self._pull_destination(request, request.query.get("destination"))
        if err:
            return err
        try:
            count = min(MAX_PAGE, max(1, int(request.query.get("_count", "50"))))
            after = int(request.query.get("_after", "0"))
        except ValueError:
            return outcome(400, "SEARCH-PARAM-INVALID", "_count and _after must be integers",
                           issue_type="value")
        base = f"{request.scheme}://{request.host}/fhir/Bundle"
        entries = []
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_PULL, dest.name, after, count)
            for r in rows:
                res = orjson.loads(r["bundle"])
                res["id"] = str(r["id"])
                entries.append({"fullUrl": f"{base}/{r['id']}", "resource": res,
                                "search": {"mode": "match"}})
                for pid in r["patients"] or [None]:
                    await audit.record(conn, who=who, action="results.pull", resource_type="Bundle",
                                       resource_id=str(r["id"]), patient=pid, peer=request.remote)
        body = {"resourceType": "Bundle", "type": "searchset", "entry": entries,
                "link": [{"relation": "self", "url": str(request.url)}]}
        if len(rows) == count:
            body["link"].append({"relation": "next", "url": (
                f"{base}?destination={dest.name}&_count={count}&_after={rows[-1]['id']}")})
        log.info("http.pull", destination=dest.name, system=who.name, returned=len(rows))
        return _fhir(body)

    async def taken(self, request: web.Request):
        who = require(request, "results.pull")
        try:
            outbox_id = int(request.match_info["id"])
        except ValueError:
            return outcome(404, "NOT-FOUND", "No such held bundle", issue_type="not-found")
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT destination, state FROM outbox WHERE id = $1", outbox_id)
            dest = None
            if row is not None:
                dest, err = self._pull_destination(request, row["destination"])
                if err:
                    return err
            if row is None or dest is None:
                return outcome(404, "NOT-FOUND", "No such held bundle", issue_type="not-found")
            if row["state"] == "taken":
                return outcome(200, "ALREADY-TAKEN", "Already marked taken", severity="information",
                               issue_type="informational")
            async with conn.transaction():
                await conn.execute(
                    "UPDATE outbox SET state = 'taken', done_at = now() WHERE id = $1 AND state = 'held'",
                    outbox_id)
                patients = await conn.fetch(   # audit_patients(): migration 0007
                    "SELECT p FROM outbox o JOIN message m ON m.id = o.message_id,"
                    " audit_patients(m.bundle) AS p WHERE o.id = $1", outbox_id)
                for r in patients or [{"p": None}]:
                    await audit.record(conn, who=who, action="results.taken", resource_type="Bundle",
                                       resource_id=str(outbox_id), patient=r["p"], peer=request.remote)
        log.info("http.taken", destination=dest.name, system=who.name, outbox_id=outbox_id)
        return outcome(200, "TAKEN", "Marked taken", severity="information", issue_type="informational")
