"""What a laboratory does with referred orders: search them, claim them
(a Task per referral; never handed out twice), report specimens received
(with the stability check), and the shipment view of specimens not received."""
from __future__ import annotations

import orjson

from mappings.issue import Issue

from ..authz import Principal
from ..validation import ANALYSIS_TIME_EXT
from .common import AGE_EXT, instant, new_id, now, stamp

STABILITY_RULE = "SPECIMEN-TOO-OLD"


def sr_scope(who: Principal, args: list, alias: str = "s") -> str:
    """SQL condition: the ServiceRequests this system may see."""
    args.append(who.name)
    n = len(args)
    if who.has("lis") and not who.has("ehr"):
        return f"({alias}.routing = 'referred' AND {alias}.performer = ${n})"
    return f"({alias}.requester_system = ${n})"


def specimen_scope(who: Principal, args: list, alias: str = "p") -> str:
    args.append(who.name)
    n = len(args)
    if who.has("lis") and not who.has("ehr"):
        return f"(${n} = ANY({alias}.performers))"
    return f"({alias}.requester_system = ${n})"


async def includes_for(conn, srs: list[dict], wanted: set[str]) -> list[dict]:
    """Specimens and Patients of ``srs`` for ``_include``."""
    out = []
    ids = [r["id"] for r in srs]
    if "ServiceRequest:specimen" in wanted and ids:
        rows = await conn.fetch("SELECT resource::text AS r FROM fhir_specimen"
                                " WHERE service_request_ids && $1::uuid[] ORDER BY id", ids)
        out += [orjson.loads(r["r"]) for r in rows]
    if "ServiceRequest:subject" in wanted and ids:
        rows = await conn.fetch("SELECT DISTINCT p.id, p.resource::text AS r FROM fhir_patient p"
                                " JOIN fhir_service_request s ON s.patient_id = p.id"
                                " WHERE s.id = ANY($1::uuid[]) ORDER BY p.id", ids)
        out += [orjson.loads(r["r"]) for r in rows]
    return out


async def claim(conn, who: Principal, limit: int) -> list[tuple[dict, dict]]:
    """Claim up to ``limit`` unclaimed referrals for ``who`` (call in a transaction).

    Rows are locked with SKIP LOCKED, so concurrent claimers take disjoint
    sets; the unique index on fhir_task(focus) is the backstop: a referral
    whose Task insert conflicts is not returned.
    """
    rows = await conn.fetch(
        "SELECT s.id::text FROM fhir_service_request s WHERE s.routing = 'referred'"
        " AND s.performer = $1 AND s.status = 'active'"
        " AND NOT EXISTS (SELECT 1 FROM fhir_task t WHERE t.focus = s.id)"
        " ORDER BY s.seq LIMIT $2 FOR UPDATE OF s SKIP LOCKED", who.name, limit)
    out = []
    for r in rows:
        task = await create_task(conn, who, r["id"])
        if task is not None:
            sr = await conn.fetchval("SELECT resource::text FROM fhir_service_request WHERE id = $1::uuid",
                                     r["id"])
            out.append((orjson.loads(sr), task))
    return out


async def create_task(conn, who: Principal, sr_id: str, given: dict | None = None) -> dict | None:
    """The accepted Task claiming one referral, or None if it is claimed already."""
    t = now()
    task = dict(given or {})
    task.update({"resourceType": "Task", "status": "accepted", "intent": task.get("intent", "order"),
                 "focus": {"reference": f"ServiceRequest/{sr_id}"},
                 "owner": task.get("owner") or {"display": who.name},
                 "authoredOn": task.get("authoredOn") or instant(t)})
    tid = new_id()
    stamp(task, tid, t)
    got = await conn.fetchval(
        "INSERT INTO fhir_task (id, focus, owner, status, resource, last_updated)"
        " VALUES ($1, $2::uuid, $3, 'accepted', $4::jsonb, $5) ON CONFLICT (focus) DO NOTHING RETURNING id",
        tid, sr_id, who.name, orjson.dumps(task).decode(), t)
    return task if got is not None else None


async def receive(conn, validator, who: Principal, specimen_id: str, received_at) -> tuple[dict, list[Issue]] | None:
    """Record receipt of a specimen and check its age against the stability limits.

    Too old: Specimen.condition and a note say so, the specimen is held
    (``on_hold``) and the laboratory's orders for it go ``on-hold``.
    """
    args: list = [specimen_id]
    row = await conn.fetchrow(
        f"SELECT p.resource::text AS r, p.service_request_ids FROM fhir_specimen p"
        f" WHERE p.id = $1::uuid AND {specimen_scope(who, args)} FOR UPDATE", *args)
    if row is None:
        return None
    spec = orjson.loads(row["r"])
    codes = await conn.fetch(
        "SELECT id::text, resource::text AS r FROM fhir_service_request WHERE id = ANY($1::uuid[])"
        " AND performer = $2", row["service_request_ids"], who.name)
    spec["receivedTime"] = instant(received_at)
    issues = _stability(validator, who.name, spec, [orjson.loads(c["r"]) for c in codes], received_at)
    held = any(i.code == STABILITY_RULE for i in issues)
    if held:
        spec["condition"] = [{"text": "Too old at receipt (stability limit exceeded)"}]
        spec["note"] = (spec.get("note") or []) + [{"text": i.text} for i in issues]
    version = int(spec.get("meta", {}).get("versionId", "1")) + 1
    t = now()
    stamp(spec, spec["id"], t, version)
    await conn.execute(
        "UPDATE fhir_specimen SET resource = $2::jsonb, received_at = $3, on_hold = $4, last_updated = $5"
        " WHERE id = $1::uuid", specimen_id, orjson.dumps(spec).decode(), received_at, held, t)
    if held:
        await conn.execute(
            "UPDATE fhir_service_request SET status = 'on-hold', last_updated = $3,"
            " resource = jsonb_set(resource, '{status}', '\"on-hold\"')"
            " WHERE id = ANY($1::uuid[]) AND performer = $2 AND status = 'active'",
            [c["id"] for c in codes], who.name, t)
    return spec, issues


def _stability(validator, source: str, spec: dict, srs: list[dict], received_at) -> list[Issue]:
    """Run the clinical rule SPECIMEN-TOO-OLD with receipt as the analysis time
    (one synthetic Observation per ordered analysis on this specimen)."""
    entries = [{"fullUrl": "urn:uuid:specimen", "resource": spec}]
    for i, sr in enumerate(srs):
        entries.append({"fullUrl": f"urn:uuid:obs-{i}", "resource": {
            "resourceType": "Observation", "status": "final", "code": sr.get("code", {}),
            "specimen": {"reference": "urn:uuid:specimen"},
            "extension": [{"url": ANALYSIS_TIME_EXT, "valueDateTime": instant(received_at)}]}})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    found = validator.check(bundle, source).issues   # a what-if: nothing remembered
    return [Issue("warning", i.code, "Specimen.receivedTime", i.text, i.text_nb)
            for i in found if i.code == STABILITY_RULE]


async def shipment(conn, who: Principal, site: str | None, limit: int) -> list[dict]:
    """Specimens collected (at ``site``) and not yet received, oldest first, with their age."""
    args: list = []
    cond = [specimen_scope(who, args), "p.received_at IS NULL"]
    if site:
        args.append(site)
        cond.append(f"p.site = ${len(args)}")
    args += [limit]
    rows = await conn.fetch(
        f"SELECT p.resource::text AS r, extract(epoch FROM now() - p.collected_at)::float8 AS age"
        f" FROM fhir_specimen p WHERE {' AND '.join(cond)}"
        f" ORDER BY p.collected_at NULLS LAST, p.id LIMIT ${len(args)}", *args)
    out = []
    for r in rows:
        spec = orjson.loads(r["r"])
        if r["age"] is not None:
            spec.setdefault("extension", []).append({"url": AGE_EXT, "valueQuantity": {
                "value": round(r["age"] / 60, 1), "unit": "min",
                "system": "http://unitsofmeasure.org", "code": "min"}})
        out.append(spec)
    return out
