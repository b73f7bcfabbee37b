"""Orders in: the gateway's order rules, routing (point of care or referred,
from configuration) and storage with conditional create.

A ServiceRequest's requester-defined identifier (Parek ``RequesterDefinedUuid``;
else its first identifier; or the ``If-None-Exist`` identifier) is unique per
ordering system (a unique constraint), so a retried POST, also two identical
POSTs at the same moment, returns the order the first one created.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from mappings.issue import Issue

from ..config import Config
from .common import (SITE_EXT, add_outbox, first_code, identifier_key, identifier_values,
                     insert_message, new_id, now, parse_instant, rewrite_refs, stamp)
from .intake import issue

ACTIVE_STATUSES = {"active"}
ORDER_INTENTS = {"order", "original-order", "instance-order", "filler-order"}
REQUESTER_UUID = "RequesterDefinedUuid"


@dataclass
class Route:
    routing: str                  # poc | referred
    laboratory: str | None = None
    destination: str | None = None


def route_for(config: Config, sr: dict) -> Route | None:
    """Point of care or referred, by performer first, then by code."""
    performers = set()
    for p in sr.get("performer") or []:
        if isinstance(p, dict):
            if isinstance(p.get("reference"), str):
                performers.add(p["reference"])
            key = identifier_key(p.get("identifier"))
            if key:
                performers.add(key)
    code = first_code(sr)
    refs = config.orders.referrals
    for ref in refs:
        if performers & set(ref.performers):
            return Route("referred", ref.laboratory, ref.destination)
    if code in config.orders.poc_codes:
        return Route("poc")
    for ref in refs:
        if code in ref.codes or ("*" in ref.codes and code):
            return Route("referred", ref.laboratory, ref.destination)
    return None


def requisition_key(sr: dict, if_none_exist: str | None = None) -> str | None:
    """The requester-defined identifier as ``system|value``."""
    if if_none_exist:
        for part in if_none_exist.split("&"):
            name, _, value = part.partition("=")
            if name.strip() == "identifier" and value:
                return value if "|" in value else f"|{value}"
    idents = [i for i in sr.get("identifier") or [] if isinstance(i, dict)]
    for ident in idents:
        texts = [ident.get("type", {}).get("text")] + [c.get("code") for c in
                                                        ident.get("type", {}).get("coding", [])]
        if REQUESTER_UUID in texts:
            return identifier_key(ident)
    return identifier_key(idents[0]) if idents else None


def order_issues(config: Config, bundle: dict) -> list[Issue]:
    """The gateway's order rules over a checked transaction Bundle."""
    out = []
    if not any(e["resource"]["resourceType"] == "ServiceRequest" for e in bundle["entry"]):
        out.append(issue("ORDER-NONE", "Bundle.entry", "The transaction holds no ServiceRequest"))
    for i, e in enumerate(bundle["entry"]):
        res, path = e["resource"], f"Bundle.entry[{i}].resource"
        if res["resourceType"] != "ServiceRequest":
            continue
        if requisition_key(res) is None:
            out.append(issue("ORDER-IDENTIFIER-MISSING", f"{path}.identifier",
                             "The order needs a requester-defined identifier (Parek RequesterDefinedUuid)"))
        if res.get("status") not in ACTIVE_STATUSES:
            out.append(issue("ORDER-STATUS", f"{path}.status", "A new order must have status active"))
        if res.get("intent") not in ORDER_INTENTS:
            out.append(issue("ORDER-INTENT", f"{path}.intent", "intent must be an order"))
        if not first_code(res):
            out.append(issue("ORDER-CODE-MISSING", f"{path}.code", "The order names no coded analysis"))
        elif route_for(config, res) is None:
            out.append(issue("ORDER-NOT-ROUTABLE", f"{path}.code",
                             "No configuration says whether this analysis is done at the point of care "
                             "or referred, and to which laboratory"))
        subj = res.get("subject")
        if not (isinstance(subj, dict) and (subj.get("reference") or subj.get("identifier"))):
            out.append(issue("ORDER-SUBJECT-MISSING", f"{path}.subject",
                             "The order must identify the patient (subject)"))
    return out


@dataclass
class Stored:
    """Result of storing one order transaction."""
    message_id: int
    entries: list[tuple[str, dict, bool]] = field(default_factory=list)  # (type, resource, created)
    patients: list[str] = field(default_factory=list)


async def store_order(conn, config: Config, *, source: str, peer: str | None, raw: bytes,
                      bundle: dict, if_none_exist: str | None = None) -> Stored:
    """Store Patient, ServiceRequests and Specimens of an accepted order (one txn)."""
    t = now()
    message_id = await insert_message(conn, source=source, peer=peer, message_type="FHIR:order",
                                      raw=raw, bundle=bundle, issues=[], status="accepted")
    result = Stored(message_id)
    entries = [e for e in bundle["entry"]]
    mapping: dict[str, str] = {}
    patient_ref, patient_ident = None, None
    for e in entries:
        res = e["resource"]
        if res["resourceType"] == "Patient":
            pid, ident = await _upsert_patient(conn, source, res, t)
            patient_ref, patient_ident = f"Patient/{pid}", ident
            _alias(mapping, e, res, patient_ref)
            result.entries.append(("Patient", res, True))
            result.patients.append(ident)
    srs = [e for e in entries if e["resource"]["resourceType"] == "ServiceRequest"]
    for e in srs:
        e["_id"] = new_id()
        _alias(mapping, e, e["resource"], f"ServiceRequest/{e['_id']}")
    specimens = [e for e in entries if e["resource"]["resourceType"] == "Specimen"]
    for e in specimens:
        e["_id"] = new_id()
        _alias(mapping, e, e["resource"], f"Specimen/{e['_id']}")
    existing: dict[str, str] = {}
    referrals: dict[tuple[str, str | None], list[str]] = {}
    for e in srs:
        res = rewrite_refs(e["resource"], mapping)
        if patient_ident is None:
            patient_ident, patient_ref = await _patient_from_subject(conn, source, res, t)
            if patient_ident:
                result.patients.append(patient_ident)
        if patient_ref and not res.get("subject", {}).get("reference"):
            res["subject"] = {**res.get("subject", {}), "reference": patient_ref}
        route = route_for(config, res)
        key = requisition_key(res, if_none_exist if len(srs) == 1 else None)
        stamp(res, e["_id"], t)
        got = await conn.fetchval(
            "INSERT INTO fhir_service_request (id, requester_system, requisition_key, ident_values,"
            " patient_id, patient_ident, routing, performer, status, code, message_id, resource,"
            " created_at, last_updated)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $13)"
            " ON CONFLICT (requester_system, requisition_key) DO NOTHING RETURNING id",
            e["_id"], source, key, identifier_values(res, "identifier", "requisition"),
            _uuid_of(patient_ref), patient_ident, route.routing, route.laboratory,
            res["status"], first_code(res), message_id, orjson.dumps(res).decode(), t)
        if got is None:
            row = await conn.fetchrow(
                "SELECT id::text, resource::text FROM fhir_service_request"
                " WHERE requester_system = $1 AND requisition_key = $2", source, key)
            existing[e["_id"]] = row["id"]
            for k, v in list(mapping.items()):
                if v == f"ServiceRequest/{e['_id']}":
                    mapping[k] = f"ServiceRequest/{row['id']}"
            result.entries.append(("ServiceRequest", orjson.loads(row["resource"]), False))
        else:
            result.entries.append(("ServiceRequest", res, True))
            if route.routing == "referred":
                referrals.setdefault((route.laboratory, route.destination), []).append(e["_id"])
    for e in specimens:
        res = rewrite_refs(e["resource"], mapping)
        sr_ids = _request_ids(res, srs, e)
        if sr_ids and all(s in existing or s in existing.values() for s in sr_ids):
            continue    # a retry: the specimen was stored with its orders
        if patient_ref and not res.get("subject"):
            res["subject"] = {"reference": patient_ref}
        stamp(res, e["_id"], t)
        performers = await conn.fetchval(
            "SELECT coalesce(array_agg(DISTINCT performer) FILTER (WHERE performer IS NOT NULL), '{}')"
            " FROM fhir_service_request WHERE id = ANY($1::uuid[])", sr_ids)
        await conn.execute(
            "INSERT INTO fhir_specimen (id, ident_values, service_request_ids, requester_system,"
            " performers, site, collected_at, resource, last_updated)"
            " VALUES ($1, $2, $3::uuid[], $4, $5, $6, $7, $8::jsonb, $9)",
            e["_id"], identifier_values(res, "identifier", "accessionIdentifier"), sr_ids, source,
            performers, _site(res) or source, parse_instant(res.get("collection", {}).get("collectedDateTime")),
            orjson.dumps(res).decode(), t)
        result.entries.append(("Specimen", res, True))
    for (lab, dest), ids in referrals.items():
        if dest is not None:
            await _push_referral(conn, source=source, lab=lab, dest=dest, sr_ids=ids, peer=peer)
    return result


def _alias(mapping: dict, entry: dict, res: dict, target: str) -> None:
    if isinstance(entry.get("fullUrl"), str):
        mapping[entry["fullUrl"]] = target
    if isinstance(res.get("id"), str):
        mapping[f"{res['resourceType']}/{res['id']}"] = target


def _uuid_of(ref: str | None) -> str | None:
    return ref.split("/", 1)[1] if ref else None


def _request_ids(spec: dict, srs: list[dict], entry: dict) -> list[str]:
    ids = [r["reference"].split("/", 1)[1] for r in spec.get("request") or []
           if isinstance(r, dict) and str(r.get("reference", "")).startswith("ServiceRequest/")]
    for e in srs:   # ServiceRequest.specimen pointing at this specimen
        for r in e["resource"].get("specimen") or []:
            if isinstance(r, dict) and r.get("reference") == f"Specimen/{entry['_id']}":
                ids.append(e["_id"])
    return sorted(set(ids))


def _site(spec: dict) -> str | None:
    for ext in (spec.get("collection") or {}).get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == SITE_EXT:
            v = ext.get("valueString") or (ext.get("valueIdentifier") or {}).get("value")
            if isinstance(v, str):
                return v
    return None


async def _upsert_patient(conn, owner: str, res: dict, t, *, replace: bool = True) -> tuple[str, str]:
    """The owner's Patient for this person: created, or (``replace``) updated with ``res``."""
    ident = next((i for i in res.get("identifier") or [] if isinstance(i, dict) and i.get("value")), None)
    if ident is None:
        ident = {"system": "urn:labgate:patient", "value": new_id()}
    pid = new_id()
    stamp(res, pid, t)
    row = await conn.fetchrow(
        "INSERT INTO fhir_patient (id, owner_system, ident_system, ident_value, resource, last_updated)"
        " VALUES ($1, $6, $2, $3, $4::jsonb, $5) ON CONFLICT (owner_system, ident_system, ident_value)"
        " DO UPDATE SET resource = CASE WHEN $7 THEN jsonb_set(EXCLUDED.resource, '{id}',"
        "   to_jsonb(fhir_patient.id::text)) ELSE fhir_patient.resource END,"
        " last_updated = CASE WHEN $7 THEN EXCLUDED.last_updated ELSE fhir_patient.last_updated END"
        " RETURNING id::text",
        pid, ident.get("system") or "", ident["value"], orjson.dumps(res).decode(), t, owner, replace)
    res["id"] = row["id"]
    return row["id"], ident["value"]


async def _patient_from_subject(conn, owner: str, sr: dict, t) -> tuple[str | None, str | None]:
    """A Patient for an order that names its subject by identifier only."""
    subj = sr.get("subject") or {}
    ident = subj.get("identifier") if isinstance(subj, dict) else None
    if not (isinstance(ident, dict) and ident.get("value")):
        return None, None
    pid, value = await _upsert_patient(conn, owner, {"resourceType": "Patient", "identifier": [ident]}, t,
                                       replace=False)
    return value, f"Patient/{pid}"


async def _push_referral(conn, *, source, lab, dest, sr_ids, peer) -> None:
    """A referral message (Patient, the lab's ServiceRequests, their Specimens)
    with a pending outbox row: the MLLP sender builds OML^O21 from it."""
    rows = await conn.fetch("SELECT resource::text AS r FROM fhir_service_request WHERE id = ANY($1::uuid[])",
                            sr_ids)
    resources = [orjson.loads(r["r"]) for r in rows]
    resources += [orjson.loads(r["r"]) for r in await conn.fetch(
        "SELECT resource::text AS r FROM fhir_specimen WHERE service_request_ids && $1::uuid[]", sr_ids)]
    pat = await conn.fetchval(
        "SELECT p.resource::text FROM fhir_patient p JOIN fhir_service_request s ON s.patient_id = p.id"
        " WHERE s.id = $1::uuid", sr_ids[0])
    if pat:
        resources.insert(0, orjson.loads(pat))
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
                         "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}
    mid = await insert_message(conn, source=source, peer=peer, message_type="OML^O21", raw=None,
                               bundle=bundle, issues=[], status="accepted",
                               sha_of=orjson.dumps(bundle))
    await add_outbox(conn, mid, [(dest, "pending")])
