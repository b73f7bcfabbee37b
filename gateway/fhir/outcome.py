"""FHIR OperationOutcome and JSON responses built from gateway Issues."""
from __future__ import annotations

import orjson
from aiohttp import web

from mappings.issue import Issue

from ..http_api import FHIR_JSON

RULE_SYSTEM = "urn:labgate:rule"

# Issue codes -> OperationOutcome.issue.code (IssueType); default "processing".
_ISSUE_TYPE = {
    "JSON-INVALID": "structure", "FHIR-STRUCTURE": "structure",
    "BODY-TOO-LARGE": "too-costly", "JSON-TOO-DEEP": "too-costly",
    "FHIR-REQUIRED": "required", "FHIR-UNKNOWN-ELEMENT": "structure",
    "FHIR-REFERENCE-TARGET": "invalid", "FORBIDDEN": "forbidden", "NOT-FOUND": "not-found",
    "CLAIM-TAKEN": "conflict",
}


def outcome_resource(issues: list[Issue]) -> dict:
    out = []
    for i in issues:
        item = {"severity": i.severity, "code": _ISSUE_TYPE.get(i.code, "processing"),
                "details": {"coding": [{"system": RULE_SYSTEM, "code": i.code}], "text": i.text}}
        if i.location:
            item["expression"] = [i.location]
        out.append(item)
    if not out:
        out = [{"severity": "information", "code": "informational",
                "details": {"text": "All OK"}}]
    return {"resourceType": "OperationOutcome", "issue": out}


def fhir_response(body: dict | None, status: int = 200, headers: dict | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=orjson.dumps(body), content_type=FHIR_JSON,
                        headers=headers)


def issues_response(status: int, issues: list[Issue]) -> web.Response:
    return fhir_response(outcome_resource(issues), status)


def error(status: int, code: str, text: str, location: str = "") -> web.Response:
    return issues_response(status, [Issue("error", code, location, text)])


def not_found(rtype: str = "resource") -> web.Response:
    # Same answer for "does not exist" and "not yours": no probing.
    return error(404, "NOT-FOUND", f"No such {rtype} visible to this system")
