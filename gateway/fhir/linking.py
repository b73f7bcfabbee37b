"""Results linked to their orders, and delivered to the system that ordered.

Results reach :func:`link_result` two ways: a FHIR result Bundle posted by a
laboratory is linked in the request's own transaction; an ORU^R01 that the
HL7 pipeline stored is routed to an internal destination of ``type =
"orders"``, whose sender (:class:`OrdersSender`, registered into
gateway.delivery) links it. Linking is idempotent (one order_result_link row
per message), so at-least-once delivery never links twice.

An order matches by gateway id (basedOn ServiceRequest/<id>), by placer or
filler order number (identifier values of the result's ServiceRequests), or
by specimen identifier; several candidates are narrowed by analysis code and
the patient must agree. A result with no matching order is kept as
unsolicited: flagged in order_result_link and a warning on its message.
"""
from __future__ import annotations

import orjson

from mappings.issue import Issue

from ..config import Config, Destination
from .common import add_outbox, codes, identifier_values, new_id, now, rewrite_refs, stamp

DONE = {"final": "completed", "amended": "completed", "corrected": "completed",
        "appended": "completed", "cancelled": "revoked", "entered-in-error": "revoked"}
UNSOLICITED = Issue("warning", "ORDER-UNSOLICITED", "Bundle",
                    "No order matches this result; it is kept as an unsolicited result",
                    "Ingen rekvisisjon passer til dette svaret; lagret som uanmodet svar")


def _of(bundle: dict, rtype: str) -> list[tuple[str | None, dict]]:
    return [(e.get("fullUrl"), e["resource"]) for e in bundle.get("entry", [])
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == rtype]


def _patient_ident(bundle: dict) -> str | None:
    for _, p in _of(bundle, "Patient"):
        vals = identifier_values(p, "identifier")
        if vals:
            return vals[0]
    return None


async def _candidates(conn, bundle: dict, source: str) -> list[dict]:
    direct, placer, spec_ids = set(), set(), set()
    for rtype in ("DiagnosticReport", "Observation"):
        for _, r in _of(bundle, rtype):
            for b in r.get("basedOn") or []:
                ref = b.get("reference", "") if isinstance(b, dict) else ""
                if ref.startswith("ServiceRequest/"):
                    direct.add(ref.split("/", 1)[1])
                if isinstance(b, dict):
                    placer.update(identifier_values(b, "identifier"))
    for _, sr in _of(bundle, "ServiceRequest"):
        placer.update(identifier_values(sr, "identifier", "requisition"))
    for _, sp in _of(bundle, "Specimen"):
        spec_ids.update(identifier_values(sp, "identifier", "accessionIdentifier"))
    uuids = [d for d in direct if _is_uuid(d)]
    rows = await conn.fetch(
        "SELECT id::text, requester_system, routing, performer, patient_ident, code, status,"
        " resource::text AS r FROM fhir_service_request s"
        " WHERE (s.id = ANY($1::uuid[]) OR s.ident_values && $2::text[]"
        "   OR s.id IN (SELECT unnest(service_request_ids) FROM fhir_specimen WHERE ident_values && $3::text[]))"
        "   AND (s.routing = 'poc' OR s.performer = $4)"
        " ORDER BY s.seq FOR UPDATE", uuids, sorted(placer), sorted(spec_ids), source)
    found = [dict(r) for r in rows]
    patient = _patient_ident(bundle)
    if patient:
        found = [r for r in found if r["patient_ident"] in (None, patient)]
    result_codes = set()
    for rtype in ("Observation", "DiagnosticReport"):
        for _, r in _of(bundle, rtype):
            result_codes |= codes(r)
    if len(found) > 1 and result_codes:
        narrowed = [r for r in found if r["code"] in result_codes]
        found = narrowed or found
    return found


def _is_uuid(s: str) -> bool:
    import uuid
    try:
        uuid.UUID(s)
        return True
    except ValueError:
        return False


def _new_status(bundle: dict) -> str | None:
    # The report's status decides; a report without a usable one (an ORU with
    # an empty OBR-25 maps to "unknown") defers to its observations.
    statuses = [r.get("status") for _, r in _of(bundle, "DiagnosticReport") if r.get("status") in DONE]
    statuses = statuses or [o.get("status") for _, o in _of(bundle, "Observation")]
    mapped = {DONE.get(s) for s in statuses}
    if mapped == {"revoked"}:
        return "revoked"
    if statuses and mapped <= {"completed", "revoked"}:
        return "completed"
    return None


async def link_result(conn, config: Config, message_id: int, bundle: dict, source: str) -> dict:
    """Link one stored result message to its orders (call in a transaction)."""
    done = await conn.fetchrow("SELECT service_request_ids, unsolicited FROM order_result_link"
                               " WHERE message_id = $1", message_id)
    if done is not None:
        return {"orders": [str(x) for x in done["service_request_ids"]], "unsolicited": done["unsolicited"],
                "results": []}
    orders = await _candidates(conn, bundle, source)
    sr_ids = [o["id"] for o in orders]
    requesters = sorted({o["requester_system"] for o in orders})
    t = now()
    status = _new_status(bundle)
    if status and sr_ids:
        await conn.execute(
            "UPDATE fhir_service_request SET status = $2, last_updated = $3,"
            " resource = jsonb_set(jsonb_set(resource, '{status}', to_jsonb($2::text)),"
            "   '{meta,lastUpdated}', to_jsonb($4::text))"
            " WHERE id = ANY($1::uuid[]) AND status IN ('active', 'on-hold')",
            sr_ids, status, t, t.isoformat())
    results = await _store_results(conn, bundle, message_id, sr_ids, requesters, source, t)
    await conn.execute("INSERT INTO order_result_link (message_id, service_request_ids, unsolicited)"
                       " VALUES ($1, $2::uuid[], $3)", message_id, sr_ids, not sr_ids)
    if not sr_ids:
        await conn.execute("UPDATE message SET verdict = verdict || $2::jsonb WHERE id = $1",
                           message_id, orjson.dumps([UNSOLICITED.to_dict()]).decode())
    else:
        await conn.execute("UPDATE message SET bundle = $2::jsonb WHERE id = $1", message_id,
                           orjson.dumps(_enriched(bundle, sr_ids)).decode())
        await _deliver(conn, config, message_id, requesters)
    return {"orders": sr_ids, "unsolicited": not sr_ids, "results": results}


def _enriched(bundle: dict, sr_ids: list[str]) -> dict:
    """The result bundle with basedOn pointing at the gateway's orders too."""
    refs = [{"reference": f"ServiceRequest/{i}"} for i in sr_ids]
    for e in bundle.get("entry", []):
        r = e.get("resource", {})
        if r.get("resourceType") in ("DiagnosticReport", "Observation"):
            have = {b.get("reference") for b in r.get("basedOn") or [] if isinstance(b, dict)}
            r["basedOn"] = (r.get("basedOn") or []) + [x for x in refs if x["reference"] not in have]
    return bundle


async def _store_results(conn, bundle, message_id, sr_ids, requesters, source, t) -> list[dict]:
    """DiagnosticReports and Observations as readable resources with gateway ids."""
    bundle = orjson.loads(orjson.dumps(bundle))
    bundle = _enriched(bundle, sr_ids)
    mapping, items = {}, []
    for rtype in ("Observation", "DiagnosticReport"):
        for full_url, r in _of(bundle, rtype):
            rid = new_id()
            if full_url:
                mapping[full_url] = f"{rtype}/{rid}"
            if isinstance(r.get("id"), str):
                mapping[f"{rtype}/{r['id']}"] = f"{rtype}/{rid}"
            items.append((rid, r))
    patient_ident = _patient_ident(bundle)
    pat = await conn.fetchval("SELECT id::text FROM fhir_patient WHERE ident_value = $1 AND owner_system = $2",
                              patient_ident, requesters[0]) if patient_ident and requesters else None
    for full_url, _ in _of(bundle, "Patient"):
        if pat and full_url:
            mapping[full_url] = f"Patient/{pat}"
    out = []
    for rid, r in items:
        rewrite_refs(r, mapping)
        for key in ("specimen", "hasMember", "derivedFrom"):   # refs to entries not kept here
            if key == "specimen" and isinstance(r.get(key), dict) and str(r[key].get("reference", "")).startswith("urn:"):
                r.pop(key)
        if r.get("resourceType") == "DiagnosticReport" and isinstance(r.get("specimen"), list):
            r["specimen"] = [s for s in r["specimen"] if not str(s.get("reference", "")).startswith("urn:")] or None
            if r["specimen"] is None:
                r.pop("specimen")
        if isinstance(r.get("subject"), dict) and str(r["subject"].get("reference", "")).startswith("urn:"):
            r.pop("subject")
        stamp(r, rid, t)
        await conn.execute(
            "INSERT INTO fhir_result (id, resource_type, message_id, service_request_ids, requester_system,"
            " performer, patient_ident, resource, last_updated)"
            " VALUES ($1, $2, $3, $4::uuid[], $5, $6, $7, $8::jsonb, $9)",
            rid, r["resourceType"], message_id, sr_ids, requesters[0] if requesters else None, source,
            patient_ident, orjson.dumps(r).decode(), t)
        out.append(r)
    return out


async def _deliver(conn, config: Config, message_id: int, requesters: list[str]) -> None:
    """Outbox rows for each ordering system's result destination (no duplicates)."""
    have = {r["destination"] for r in await conn.fetch(
        "SELECT destination FROM outbox WHERE message_id = $1", message_id)}
    rows = []
    for rd in config.orders.result_delivery:
        if rd.system in requesters and rd.destination not in have:
            dest = config.destination(rd.destination)
            rows.append((dest.name, "held" if dest.type == "pull" else "pending"))
            have.add(dest.name)
    await add_outbox(conn, message_id, rows)


class OrdersSender:
    """The sender of ``type = "orders"`` destinations: links, does not transmit."""

    def __init__(self, dest: Destination, config: Config, pool):
        self._config = config
        self._pool = pool

    async def send(self, outbox_id: int, bundle_json: str) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT m.id, m.source FROM outbox o JOIN message m ON m.id = o.message_id"
                                      " WHERE o.id = $1", outbox_id)
            res = await link_result(conn, self._config, row["id"], orjson.loads(bundle_json), row["source"])
        return "unsolicited" if res["unsolicited"] else "linked"

    async def close(self) -> None:
        pass


def _register() -> None:
    from .. import delivery
    delivery.SENDERS["orders"] = OrdersSender


_register()
