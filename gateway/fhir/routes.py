"""HTTP handlers of the FHIR order/result API; ``setup(app, gw)`` registers them.

Every handler: who is calling (authz.require + a resource-level scope), the
untrusted body checked by ``intake``, one transaction for the change and its
audit rows, and an OperationOutcome for every refusal. See docs/fhir.md.
"""
from __future__ import annotations

import functools

import orjson
from aiohttp import web

from mappings.issue import Issue, rejects

from .. import audit
from .. import logging as log_setup
from ..authz import POLICY, Forbidden, principal, require
from ..routing import Router
from . import intake, lab, linking, ordering, search
from .common import add_outbox, insert_message, now, parse_instant
from .outcome import error, fhir_response, issues_response, not_found, outcome_resource

log = log_setup.get("labgate.fhir")

RESULT_TYPES = {"DiagnosticReport", "Observation", "Patient", "Specimen", "ServiceRequest", "Practitioner",
                "Organization"}
ORDER_TYPES = {"Patient", "ServiceRequest", "Specimen"}
RESULT_MESSAGE_TYPE = "FHIR:DiagnosticReport"


def _rejections(handler):
    @functools.wraps(handler)
    async def wrapped(self, request, *args):
        try:
            return await handler(self, request, *args)
        except intake.Rejected as r:
            return issues_response(r.status, r.issues)
    return wrapped


def _prefer(request: web.Request) -> str:
    for part in request.headers.get("Prefer", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "return":
            return value.strip().strip('"')
    return "representation"


class FhirApi:
    def __init__(self, gw):
        self.gw = gw
        self.config = gw.config
        self.router = Router(gw.config)
        self.max_depth = getattr(gw.config.http, "max_json_depth", 64)

    @property
    def pool(self):
        return self.gw.pool

    async def _store_rejected(self, request, who, message_type, raw, issues) -> None:
        """Store a rejected request as a message row (the console shows it)."""
        async with self.pool.acquire() as conn:
            await insert_message(conn, source=who.name, peer=request.remote, message_type=message_type,
                                 raw=raw, bundle=None, issues=issues, status="rejected")
        log.info("fhir.rejected", system=who.name, message_type=message_type,
                 codes=sorted({i.code for i in issues})[:10])

    async def _reject(self, request, who, message_type: str, raw: bytes | None, status: int,
                      issues: list[Issue]) -> web.Response:
        await self._store_rejected(request, who, message_type, raw, issues)
        return issues_response(status, issues)

    async def _body(self, request, who, message_type):
        """The JSON body, or Rejected after storing the rejected message row."""
        try:
            return await intake.read_json(request, self.max_depth)
        except intake.Rejected as r:
            raw = None if r.status == 413 else await _raw_or_none(request)
            await self._store_rejected(request, who, message_type, raw, r.issues)
            raise

    # ---- orders -------------------------------------------------------------
    @_rejections
    async def post_service_request(self, request: web.Request):
        who = require(request, "orders.create")
        raw, res = await self._body(request, who, "FHIR:order")
        issues = intake.check_resource(res, "ServiceRequest", {"ServiceRequest"})
        issues = issues or intake.resource_references(res, "ServiceRequest")
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:order", "resource": res, "request": {"method": "POST", "url": "ServiceRequest"}}]}
        checked = None
        if not issues:
            checked = self.gw.validator.check(bundle, who.name)
            issues = [_relocate(i, "Bundle.entry[0].resource", "ServiceRequest")
                      for i in ordering.order_issues(self.config, bundle) + checked.issues]
        if rejects(issues):
            return await self._reject(request, who, "FHIR:order", raw, 422 if res.get("resourceType") else 400, issues)
        stored = await self._store_order(request, who, raw, bundle, request.headers.get("If-None-Exist"),
                                         checked)
        rtype, sr, created = next(e for e in stored.entries if e[0] == "ServiceRequest")
        headers = {"Location": f"{_base(request)}/fhir/ServiceRequest/{sr['id']}/_history/1",
                   "ETag": 'W/"1"'}
        return _answer(request, sr, 201 if created else 200, headers)

    @_rejections
    async def transaction(self, request: web.Request):
        who = principal(request)
        if who is None:   # the core marks only /fhir/... as protected; the base URL is ours to check
            return error(401, "AUTH-MISSING", "A bearer token is required")
        if not who.has(*(POLICY["orders.create"] | POLICY["results.create"])):
            raise Forbidden(reason="not allowed: orders.create or results.create")   # before reading the body
        raw, bundle = await self._body(request, who, "FHIR:transaction")
        entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
        types = {rt for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                 and isinstance(rt := e["resource"].get("resourceType"), str)}
        if types & {"DiagnosticReport", "Observation"}:
            return await self._results(request, require(request, "results.create"), raw, bundle)
        who = require(request, "orders.create")
        issues = intake.check_bundle(bundle, ORDER_TYPES)
        checked = None
        if not issues:
            checked = self.gw.validator.check(bundle, who.name)
            issues = ordering.order_issues(self.config, bundle) + checked.issues
        if rejects(issues):
            return await self._reject(request, who, "FHIR:order", raw, 422, issues)
        stored = await self._store_order(request, who, raw, bundle, None, checked)
        entries = []
        for rtype, res, created in stored.entries:
            entry = {"response": {"status": "201 Created" if created else "200 OK",
                                  "location": f"{rtype}/{res['id']}/_history/{res.get('meta', {}).get('versionId', '1')}",
                                  "lastModified": res.get("meta", {}).get("lastUpdated")}}
            if _prefer(request) == "representation":
                entry["resource"] = res
            entries.append(entry)
        return fhir_response({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

    async def _store_order(self, request, who, raw, bundle, if_none_exist, checked):
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await ordering.store_order(conn, self.config, source=who.name, peer=request.remote,
                                                raw=raw, bundle=bundle, if_none_exist=if_none_exist)
            for rtype, res, created in stored.entries:
                await audit.record(conn, who=who, action="orders.create" if created else "orders.create.existing",
                                   resource_type=rtype, resource_id=res["id"],
                                   patient=stored.patients[0] if stored.patients else None, peer=request.remote)
        if any(created for _, _, created in stored.entries):   # committed, and new
            self.gw.validator.remember(checked.history)
        log.info("fhir.order_stored", system=who.name, message_id=stored.message_id,
                 created=sum(1 for e in stored.entries if e[2]))
        return stored

    # ---- results ------------------------------------------------------------
    async def _results(self, request, who, raw, bundle):
        issues = intake.check_bundle(bundle, RESULT_TYPES)
        checked = None
        if not issues:
            checked = self.gw.validator.check(bundle, who.name)
            issues = checked.issues
        if rejects(issues):
            return await self._reject(request, who, RESULT_MESSAGE_TYPE, raw, 422, issues)
        dests = [(d, s) for d, s in self.router.destinations(who.name, RESULT_MESSAGE_TYPE)
                 if self.config.destination(d).type != "orders"]   # linked right here instead
        async with self.pool.acquire() as conn, conn.transaction():
            mid = await insert_message(conn, source=who.name, peer=request.remote,
                                       message_type=RESULT_MESSAGE_TYPE, raw=raw, bundle=bundle,
                                       issues=issues, status="accepted")
            await add_outbox(conn, mid, dests)
            linked = await linking.link_result(conn, self.config, mid, bundle, who.name)
            for r in linked["results"]:
                await audit.record(conn, who=who, action="results.create", resource_type=r["resourceType"],
                                   resource_id=r["id"], peer=request.remote)
        self.gw.validator.remember(checked.history)   # committed
        log.info("fhir.result_stored", system=who.name, message_id=mid, unsolicited=linked["unsolicited"])
        entries = [{"response": {"status": "201 Created",
                                 "location": f"{r['resourceType']}/{r['id']}/_history/1"},
                    **({"resource": r} if _prefer(request) == "representation" else {})}
                   for r in linked["results"]]
        out = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        if linked["unsolicited"]:
            out["entry"].append({"response": {"status": "200 OK",
                                              "outcome": outcome_resource([linking.UNSOLICITED])}})
        return fhir_response(out)

    # ---- reads and searches -------------------------------------------------
    @_rejections
    async def search_service_requests(self, request: web.Request):
        who = require(request, "orders.read")
        args: list = []
        cond = [lab.sr_scope(who, args)]
        q = request.query
        if "performer" in q:
            args.append(q["performer"])
            cond.append(f"s.performer = ${len(args)}")
        if "status" in q:
            args.append(q["status"].split(","))
            cond.append(f"s.status = ANY(${len(args)}::text[])")
        if q.get("claimed") in ("false", "true"):
            cond.append(("NOT " if q["claimed"] == "false" else "") +
                        "EXISTS (SELECT 1 FROM fhir_task t WHERE t.focus = s.id)")
        for key in ("subject:identifier", "patient:identifier"):
            if key in q:
                args.append(search.token_value(q[key])[1])
                cond.append(f"s.patient_ident = ${len(args)}")
        if "identifier" in q:
            args.append([search.token_value(q["identifier"])[1]])
            cond.append(f"s.ident_values && ${len(args)}::text[]")
        cond += search.last_updated(request, "s.last_updated", args)
        n, after = search.count(request), search.after(request)
        args += [after, n + 1]
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT s.seq, s.id::text, s.patient_ident, s.resource::text AS r FROM fhir_service_request s"
                f" WHERE {' AND '.join(cond)} AND s.seq > ${len(args) - 1} ORDER BY s.seq LIMIT ${len(args)}",
                *args)
            page = rows[:n]
            srs = [orjson.loads(r["r"]) for r in page]
            inc = await lab.includes_for(conn, srs, set(q.getall("_include", [])))
            await self._audit_reads(conn, who, request, "ServiceRequest", page)
        nxt = page[-1]["seq"] if len(rows) > n else None
        return fhir_response(search.searchset(request, srs, inc, nxt))

    async def _audit_reads(self, conn, who, request, rtype, rows):
        for r in rows:
            await audit.record(conn, who=who, action=f"{rtype}.read", resource_type=rtype,
                               resource_id=r["id"], patient=r.get("patient_ident") if hasattr(r, "get") else None,
                               peer=request.remote)

    async def read_service_request(self, request: web.Request):
        who = require(request, "orders.read")
        args: list = [request.match_info["id"]]
        if not linking._is_uuid(args[0]):
            return not_found("ServiceRequest")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT s.id::text, s.patient_ident, s.resource::text AS r FROM fhir_service_request s"
                f" WHERE s.id = $1::uuid AND {lab.sr_scope(who, args)}", *args)
            await audit.record(conn, who=who, action="ServiceRequest.read", resource_type="ServiceRequest",
                               resource_id=args[0], patient=row["patient_ident"] if row else None,
                               peer=request.remote, outcome="success" if row else "denied")
        if row is None:
            return not_found("ServiceRequest")
        return fhir_response(orjson.loads(row["r"]))

    async def _read_result(self, request, rtype):
        who = require(request, "results.pull")
        rid = request.match_info["id"]
        if not linking._is_uuid(rid):
            return not_found(rtype)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id::text, patient_ident, resource::text AS r FROM fhir_result"
                " WHERE id = $1::uuid AND resource_type = $2 AND (requester_system = $3 OR performer = $3)",
                rid, rtype, who.name)
            await audit.record(conn, who=who, action=f"{rtype}.read", resource_type=rtype, resource_id=rid,
                               patient=row["patient_ident"] if row else None, peer=request.remote,
                               outcome="success" if row else "denied")
        return fhir_response(orjson.loads(row["r"])) if row else not_found(rtype)

    async def read_report(self, request):
        return await self._read_result(request, "DiagnosticReport")

    async def read_observation(self, request):
        return await self._read_result(request, "Observation")

    @_rejections
    async def _search_results(self, request, rtype):
        who = require(request, "results.pull")
        args: list = [rtype, who.name]
        cond = ["r.resource_type = $1", "(r.requester_system = $2 OR r.performer = $2)"]
        q = request.query
        for key in ("subject:identifier", "patient:identifier"):
            if key in q:
                args.append(search.token_value(q[key])[1])
                cond.append(f"r.patient_ident = ${len(args)}")
        if "based-on" in q:
            ref = q["based-on"].rsplit("/", 1)[-1]
            if not linking._is_uuid(ref):
                return fhir_response(search.searchset(request, [], [], None))
            args.append(ref)
            cond.append(f"${len(args)}::uuid = ANY(r.service_request_ids)")
        cond += search.last_updated(request, "r.last_updated", args)
        n = search.count(request)
        args.append(n)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT r.id::text, r.patient_ident, r.resource::text AS r FROM fhir_result r"
                f" WHERE {' AND '.join(cond)} ORDER BY r.last_updated, r.id LIMIT ${len(args)}", *args)
            await self._audit_reads(conn, who, request, rtype, rows)
        return fhir_response(search.searchset(request, [orjson.loads(r["r"]) for r in rows], [], None))

    async def search_reports(self, request):
        return await self._search_results(request, "DiagnosticReport")

    async def search_observations(self, request):
        return await self._search_results(request, "Observation")

    # ---- laboratory: claim, receive, shipment ------------------------------
    @_rejections
    async def claim(self, request: web.Request):
        who = require(request, "specimens.pull")
        n = search.count(request, default=10)
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await lab.claim(conn, who, n)
            srs = [sr for sr, _ in claimed]
            inc = [t for _, t in claimed] + await lab.includes_for(
                conn, srs, {"ServiceRequest:specimen", "ServiceRequest:subject"})
            for sr, task in claimed:
                await audit.record(conn, who=who, action="specimens.claim", resource_type="ServiceRequest",
                                   resource_id=sr["id"], peer=request.remote)
        log.info("fhir.claimed", system=who.name, count=len(claimed))
        return fhir_response(search.searchset(request, srs, inc, None))

    @_rejections
    async def post_task(self, request: web.Request):
        who = require(request, "specimens.pull")
        raw, task = await self._body(request, who, "FHIR:Task")
        issues = intake.check_resource(task, "Task", {"Task"}) or intake.resource_references(task, "Task")
        focus = (task.get("focus") or {}).get("reference", "") if isinstance(task.get("focus"), dict) else ""
        if not issues and (task.get("status") != "accepted" or not focus.startswith("ServiceRequest/")):
            issues = [intake.issue("TASK-CLAIM", "Task.focus", "A claim is a Task with status accepted "
                                   "and focus ServiceRequest/<id>")]
        if issues:
            return await self._reject(request, who, "FHIR:Task", raw, 422, issues)
        sr_id = focus.split("/", 1)[1]
        if not linking._is_uuid(sr_id):
            return not_found("ServiceRequest")
        async with self.pool.acquire() as conn, conn.transaction():
            ok = await conn.fetchval(
                "SELECT 1 FROM fhir_service_request WHERE id = $1::uuid AND routing = 'referred'"
                " AND performer = $2", sr_id, who.name)
            if not ok:
                return not_found("ServiceRequest")
            created = await lab.create_task(conn, who, sr_id, task)
            await audit.record(conn, who=who, action="specimens.claim", resource_type="ServiceRequest",
                               resource_id=sr_id, peer=request.remote,
                               outcome="success" if created else "denied")
        if created is None:
            return error(409, "CLAIM-TAKEN", "This referral is already claimed", "Task.focus")
        return _answer(request, created, 201, {"Location": f"{_base(request)}/fhir/Task/{created['id']}/_history/1"})

    @_rejections
    async def receive(self, request: web.Request):
        who = require(request, "specimens.pull")
        sid = request.match_info["id"]
        received = now()
        if request.can_read_body:
            _, params = await self._body(request, who, "FHIR:Specimen-receive")
            issues = intake.check_resource(params, "Parameters", {"Parameters"})
            if issues:
                raise intake.Rejected(422, issues)
            for p in params.get("parameter") or []:
                if p.get("name") == "receivedTime":
                    received = parse_instant(p.get("valueDateTime")) or received
        if not linking._is_uuid(sid):
            return not_found("Specimen")
        async with self.pool.acquire() as conn, conn.transaction():
            got = await lab.receive(conn, self.gw.validator, who, sid, received)
            await audit.record(conn, who=who, action="specimens.receive", resource_type="Specimen",
                               resource_id=sid, peer=request.remote, outcome="success" if got else "denied")
        if got is None:
            return not_found("Specimen")
        spec, issues = got
        log.info("fhir.specimen_received", system=who.name, held=bool(issues))
        if _prefer(request) == "OperationOutcome":
            return issues_response(200, issues)
        return fhir_response(spec)

    @_rejections
    async def search_specimens(self, request: web.Request):
        who = require(request, "orders.read")
        if request.query.get("received") != "false":
            raise intake.Rejected(400, [intake.issue("SEARCH-PARAM", "received",
                                                     "Specimen search supports received=false (shipment view)")])
        async with self.pool.acquire() as conn, conn.transaction():
            specs = await lab.shipment(conn, who, request.query.get("site"), search.count(request))
            for s in specs:
                await audit.record(conn, who=who, action="Specimen.read", resource_type="Specimen",
                                   resource_id=s["id"], peer=request.remote)
        return fhir_response(search.searchset(request, specs, [], None))

    async def read_specimen(self, request: web.Request):
        who = require(request, "orders.read")
        sid = request.match_info["id"]
        if not linking._is_uuid(sid):
            return not_found("Specimen")
        args: list = [sid]
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT p.resource::text AS r FROM fhir_specimen p WHERE p.id = $1::uuid"
                                      f" AND {lab.specimen_scope(who, args)}", *args)
            await audit.record(conn, who=who, action="Specimen.read", resource_type="Specimen", resource_id=sid,
                               peer=request.remote, outcome="success" if row else "denied")
        return fhir_response(orjson.loads(row["r"])) if row else not_found("Specimen")


async def _raw_or_none(request):
    try:
        return await request.read()
    except Exception:
        return None


def _relocate(i: Issue, old: str, new: str) -> Issue:
    return Issue(i.severity, i.code, i.location.replace(old, new), i.text, i.text_nb)


def _base(request) -> str:
    return f"{request.scheme}://{request.host}"


def _answer(request, resource: dict, status: int, headers: dict) -> web.Response:
    pref = _prefer(request)
    if pref == "minimal":
        return fhir_response(None, status, headers)
    if pref == "OperationOutcome":
        return fhir_response(outcome_resource([]), status, headers)
    return fhir_response(resource, status, headers)


def setup(app: web.Application, gw) -> None:
    api = FhirApi(gw)
    app.add_routes([
        web.post("/fhir", api.transaction),
        web.post("/fhir/", api.transaction),
        web.post("/fhir/ServiceRequest", api.post_service_request),
        web.get("/fhir/ServiceRequest", api.search_service_requests),
        web.post("/fhir/ServiceRequest/$claim", api.claim),
        web.get("/fhir/ServiceRequest/{id}", api.read_service_request),
        web.post("/fhir/Task", api.post_task),
        web.get("/fhir/Specimen", api.search_specimens),
        web.get("/fhir/Specimen/{id}", api.read_specimen),
        web.post("/fhir/Specimen/{id}/$receive", api.receive),
        web.get("/fhir/DiagnosticReport", api.search_reports),
        web.get("/fhir/DiagnosticReport/{id}", api.read_report),
        web.get("/fhir/Observation", api.search_observations),
        web.get("/fhir/Observation/{id}", api.read_observation),
    ])
