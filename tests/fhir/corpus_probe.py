"""Feeds the public FHIR corpus to the API the way its resource type would
arrive: orders by the EHR, results by the laboratory, claims as Tasks."""
from __future__ import annotations

import copy

from fhirkit import patient, transaction

RESULTS = {"Observation", "DiagnosticReport"}


async def submit(c, res: dict) -> tuple[int, dict | None, str]:
    """(status, body, who) for one corpus resource."""
    rtype = res.get("resourceType")
    res = copy.deepcopy(res)
    if rtype == "ServiceRequest":
        return (*(await c["ehr"].post("/fhir/ServiceRequest", res))[:2], "ehr")
    if rtype == "Task":
        return (*(await c["lis"].post("/fhir/Task", res))[:2], "lis")
    if rtype == "Bundle":
        types = {e.get("resource", {}).get("resourceType") for e in res.get("entry", [])}
        who = "lis" if types & RESULTS else "ehr"
        return (*(await c[who].post("/fhir", res))[:2], who)
    who = "lis" if rtype in RESULTS else "ehr"
    body = transaction(("urn:uuid:corpus-pat", patient()), (f"urn:uuid:corpus-{rtype}", res))
    return (*(await c[who].post("/fhir", body))[:2], who)


def reasons(body: dict) -> set[str]:
    return {c["code"] for i in body.get("issue", []) if i.get("severity") in ("error", "fatal")
            for c in i.get("details", {}).get("coding", [])}


def as_transaction(bundle: dict) -> dict:
    """A collection/batch Bundle's entries as a transaction (POST each)."""
    entries = []
    for i, e in enumerate(bundle.get("entry", [])):
        res = e.get("resource")
        if isinstance(res, dict):
            entries.append({"fullUrl": e.get("fullUrl") or f"urn:uuid:entry-{i}", "resource": res,
                            "request": {"method": "POST", "url": res.get("resourceType", "")}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def masked(value):
    """``value`` with ids, meta and reference targets masked: what must survive a round trip."""
    if isinstance(value, dict):
        return {k: ("<ref>" if k == "reference" else masked(v)) for k, v in value.items()
                if k not in ("id", "meta")}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def contains(stored, sent) -> bool:
    """Every element sent is in what was stored (the server may add, never lose or change)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and contains(stored[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(
            contains(a, b) for a, b in zip(stored, sent))
    return stored == sent
