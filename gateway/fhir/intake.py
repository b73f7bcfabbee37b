"""Untrusted FHIR JSON in: size, JSON syntax, nesting depth, the R4 model
(fhir.resources R4B: types, unknown and missing elements) and reference
targets. Everything wrong becomes an :class:`Issue` with a FHIRPath-style
location; nothing here touches the database."""
from __future__ import annotations

from aiohttp import web
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from mappings.issue import Issue

from ..security.jsonsafe import JsonLimitError, load_json

# Reference elements whose target type the gateway relies on.
REFERENCE_TARGETS: dict[str, dict[str, frozenset[str]]] = {
    "ServiceRequest": {"subject": frozenset({"Patient"}), "specimen": frozenset({"Specimen"}),
                       "basedOn": frozenset({"ServiceRequest", "CarePlan", "MedicationRequest"})},
    "Specimen": {"subject": frozenset({"Patient", "Group", "Device", "Substance", "Location"}),
                 "request": frozenset({"ServiceRequest"}), "parent": frozenset({"Specimen"})},
    "DiagnosticReport": {"subject": frozenset({"Patient", "Group", "Device", "Location"}),
                         "basedOn": frozenset({"ServiceRequest", "CarePlan", "ImmunizationRecommendation",
                                               "MedicationRequest", "NutritionOrder"}),
                         "specimen": frozenset({"Specimen"}), "result": frozenset({"Observation"})},
    "Observation": {"subject": frozenset({"Patient", "Group", "Device", "Location"}),
                    "specimen": frozenset({"Specimen"}),
                    "basedOn": frozenset({"ServiceRequest", "CarePlan", "DeviceRequest",
                                          "ImmunizationRecommendation", "MedicationRequest",
                                          "NutritionOrder"}),
                    "hasMember": frozenset({"Observation", "QuestionnaireResponse",
                                            "MolecularSequence"})},
    "Task": {"focus": frozenset({"ServiceRequest"})},
}


class Rejected(Exception):
    """The request body cannot be used; ``status`` and ``issues`` say why."""

    def __init__(self, status: int, issues: list[Issue]):
        super().__init__(issues[0].text if issues else "rejected")
        self.status = status
        self.issues = issues


def issue(code: str, location: str, text: str, severity: str = "error") -> Issue:
    return Issue(severity, code, location, text)


async def read_json(request: web.Request, max_depth: int) -> tuple[bytes, dict]:
    """The body as bytes and a JSON object, or raise Rejected (413/400).

    Size and depth limits and the parse are gateway.security.jsonsafe's, so
    every JSON endpoint answers the same codes (JSON-INVALID, JSON-TOO-DEEP).
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:   # a chunked body over http.max_body_bytes
        raise Rejected(413, [issue("BODY-TOO-LARGE", "", "The body is larger than this server "
                                   "accepts (http.max_body_bytes)")]) from None
    try:
        data = load_json(raw, max_depth=max_depth, max_bytes=len(raw))
    except JsonLimitError as e:
        raise Rejected(400, [issue(e.code, "", e.text[:300])]) from None
    if not isinstance(data, dict):
        raise Rejected(400, [issue("FHIR-STRUCTURE", "", "The body must be a JSON object (a FHIR resource)")])
    return raw, data


def check_resource(res: dict, path: str, expected: set[str] | None = None) -> list[Issue]:
    """R4 model errors of one resource (types, unknown, missing elements)."""
    rtype = res.get("resourceType")
    if not isinstance(rtype, str):
        return [issue("FHIR-STRUCTURE", path, "resourceType is missing")]
    if expected is not None and rtype not in expected:
        return [issue("FHIR-RESOURCE-TYPE", f"{path}.resourceType",
                      f"{rtype} is not accepted here (expected {', '.join(sorted(expected))})")]
    try:
        cls = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        return [issue("FHIR-STRUCTURE", f"{path}.resourceType", f"Unknown resource type {rtype[:60]!r}")]
    if rtype == "Bundle":   # entries are checked one by one, for every error
        res = {k: v for k, v in res.items() if k != "entry"}
    try:
        cls.model_validate(res)
    except ValidationError as e:
        return [_from_pydantic(err, path) for err in e.errors()[:50]]
    except KeyError as e:   # fhir.resources: a nested resourceType it has no model for
        return [issue("FHIR-STRUCTURE", path, f"Unknown nested resource type {str(e)[:60]}")]
    except (ValueError, TypeError, RecursionError) as e:
        return [issue("FHIR-STRUCTURE", path, f"{type(e).__name__}: {str(e)[:300]}")]
    return []


def _from_pydantic(err: dict, path: str) -> Issue:
    loc = path
    for part in err.get("loc", ()):
        loc += f"[{part}]" if isinstance(part, int) else f".{part}"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return issue("FHIR-UNKNOWN-ELEMENT", loc, "Unknown element (not in FHIR R4)")
    if "missing" in kind:
        return issue("FHIR-REQUIRED", loc, "Required element is missing")
    return issue("FHIR-STRUCTURE", loc, str(err.get("msg", "invalid value"))[:300])


def check_bundle(bundle: dict, allowed: set[str]) -> list[Issue]:
    """Model errors of a transaction Bundle and every entry resource."""
    issues = check_resource(bundle, "Bundle", {"Bundle"})
    if issues:
        return issues
    if bundle.get("type") != "transaction":
        return [issue("FHIR-BUNDLE-TYPE", "Bundle.type", "Only transaction Bundles are accepted here")]
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        return [issue("FHIR-REQUIRED", "Bundle.entry", "The transaction has no entries")]
    for i, entry in enumerate(entries):
        path = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            issues.append(issue("FHIR-REQUIRED", f"{path}.resource", "Entry without a resource"))
            continue
        req = entry.get("request")
        if not isinstance(req, dict) or req.get("method") not in ("POST", "PUT"):
            issues.append(issue("FHIR-TRANSACTION-METHOD", f"{path}.request.method",
                                "Only POST (create) and PUT entries are accepted"))
        issues += check_resource(entry["resource"], f"{path}.resource", allowed)
    if not issues:
        issues = check_references(bundle)
    return issues


def _ref_type(ref: str, local: dict[str, str]) -> str | None:
    if ref in local:
        return local[ref]
    if ref.startswith("#"):
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2]
    if len(parts) >= 4 and parts[-2] == "_history":
        return parts[-4]
    return None


def check_references(bundle: dict) -> list[Issue]:
    """Every checked reference points at a resource of an allowed type."""
    entries = bundle.get("entry", [])
    local = {e["fullUrl"]: e["resource"]["resourceType"] for e in entries
             if isinstance(e.get("fullUrl"), str)}
    issues = []
    for i, e in enumerate(entries):
        issues += resource_references(e["resource"], f"Bundle.entry[{i}].resource", local)
    return issues


def resource_references(res: dict, path: str, local: dict[str, str] | None = None) -> list[Issue]:
    local = local or {}
    issues = []
    for element, allowed in REFERENCE_TARGETS.get(res.get("resourceType"), {}).items():
        values = res.get(element)
        items = values if isinstance(values, list) else [values] if values is not None else []
        for j, ref in enumerate(items):
            target = ref.get("reference") if isinstance(ref, dict) else None
            target = target if isinstance(target, str) else None
            where = f"{path}.{element}" + (f"[{j}]" if isinstance(values, list) else "")
            declared = ref.get("type") if isinstance(ref, dict) else None
            declared = declared if isinstance(declared, str) else None
            kind = _ref_type(target, local) if isinstance(target, str) else declared
            if target is not None and target.startswith("urn:") and target not in local:
                issues.append(issue("FHIR-REFERENCE-UNRESOLVED", f"{where}.reference",
                                    "The reference points at no entry of this Bundle"))
            elif kind is not None and kind not in allowed:
                issues.append(issue("FHIR-REFERENCE-TARGET", f"{where}.reference",
                                    f"{element} must refer to {' or '.join(sorted(allowed))}, not {kind}"))
    return issues
