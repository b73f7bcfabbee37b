"""Small helpers shared by the FHIR modules: ids, timestamps, identifiers,
message rows, reference rewriting and the audit of patient data."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone

import orjson

from mappings.issue import Issue

from ..store import NOTIFY_CHANNEL

SITE_EXT = "urn:labgate:fhir:collection-site"
AGE_EXT = "urn:labgate:fhir:specimen-age"


def now() -> datetime:
    return datetime.now(timezone.utc)


def instant(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def stamp(res: dict, rid: str, t: datetime, version: int = 1) -> dict:
    res["id"] = rid
    res["meta"] = {**(res.get("meta") if isinstance(res.get("meta"), dict) else {}),
                   "versionId": str(version), "lastUpdated": instant(t)}
    return res


def identifier_key(ident) -> str | None:
    """``system|value`` of an Identifier dict, or None."""
    if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
        return None
    return f"{ident.get('system') or ''}|{ident['value']}"


def identifier_values(res: dict, *elements: str) -> list[str]:
    out = []
    for el in elements:
        v = res.get(el)
        for ident in v if isinstance(v, list) else [v]:
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                out.append(ident["value"])
    return out


def first_code(res: dict) -> str | None:
    code = res.get("code")
    for c in code.get("coding", []) if isinstance(code, dict) else []:
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            return c["code"]
    return None


def codes(res: dict) -> set[str]:
    code = res.get("code")
    return {c["code"] for c in (code.get("coding", []) if isinstance(code, dict) else [])
            if isinstance(c, dict) and isinstance(c.get("code"), str)}


def rewrite_refs(value, mapping: dict[str, str]):
    """Replace every Reference.reference found in ``mapping`` (fullUrl -> Type/id), in place."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref in mapping:
            value["reference"] = mapping[ref]
        for v in value.values():
            if isinstance(v, (dict, list)):
                rewrite_refs(v, mapping)
    elif isinstance(value, list):
        for v in value:
            rewrite_refs(v, mapping)
    return value


async def insert_message(conn, *, source: str, peer: str | None, message_type: str, raw: bytes | None,
                         bundle: dict | None, issues: list[Issue], status: str,
                         control_id: str | None = None, sha_of: bytes | None = None) -> int:
    """Store one FHIR request as a message row (the console lists it)."""
    sha = hashlib.sha256(sha_of if sha_of is not None else (raw or b"")).digest()
    return await conn.fetchval(
        "INSERT INTO message (source, protocol, peer, message_type, control_id, content_sha256,"
        " raw, bundle, verdict, status) VALUES ($1, 'fhir', $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9)"
        " RETURNING id",
        source, peer, message_type, control_id, sha, raw,
        orjson.dumps(bundle).decode() if bundle is not None else None,
        orjson.dumps([i.to_dict() for i in issues]).decode(), status)


async def add_outbox(conn, message_id: int, rows: list[tuple[str, str]]) -> None:
    """Outbox rows (destination, state) for a stored message; wakes push workers."""
    for dest, state in rows:
        await conn.execute("INSERT INTO outbox (message_id, destination, state) VALUES ($1, $2, $3)",
                           message_id, dest, state)
        if state == "pending":
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, dest)


def parse_instant(value) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
