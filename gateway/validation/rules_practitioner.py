"""Requester and performer identifier rules (DOMAIN.md §1.3)."""
from __future__ import annotations

from typing import Iterator

from mappings import identifiers as ids
from mappings import systems

from .bundle_view import as_list, BundleView, view_of
from .registry import rule

HPR_SYSTEMS = frozenset({systems.HPR, "http://hl7.no/fhir/NamingSystem/HPR"})

# Where requesters, performers and collectors are referenced.
_ACTOR_FIELDS = (
    ("ServiceRequest", "requester"),
    ("ServiceRequest", "performer"),
    ("Observation", "performer"),
    ("DiagnosticReport", "performer"),
    ("DiagnosticReport", "resultsInterpreter"),
)


def _refs(view: BundleView) -> Iterator[tuple[int, str, int | None, object]]:
    """(entry index, field path, list position or None, reference) of every actor reference."""
    for rtype, fld in _ACTOR_FIELDS:
        for i, res in view.by_type.get(rtype, ()):
            value = res.get(fld)
            if isinstance(value, list):
                for n, ref in enumerate(value):
                    yield i, fld, n, ref
            elif value is not None:
                yield i, fld, None, value
    for i, res in view.by_type.get("Specimen", ()):
        col = res.get("collection")
        if isinstance(col, dict) and "collector" in col:
            yield i, "collection.collector", None, col["collector"]
    for i, res in view.by_type.get("PractitionerRole", ()):
        if "practitioner" in res:
            yield i, "practitioner", None, res["practitioner"]


def _is_hpr(ident) -> bool:
    if not isinstance(ident, dict):
        return False
    system = ident.get("system")
    return isinstance(system, str) and system in HPR_SYSTEMS


def hpr_identifiers(view: BundleView) -> Iterator[tuple[str, object]]:
    """(location, value) of every HPR identifier on Practitioners and logical references."""
    for i, res in view.by_type.get("Practitioner", ()):
        for n, ident in enumerate(as_list(res.get("identifier"))):
            if _is_hpr(ident):
                yield f"Bundle.entry[{i}].resource.identifier[{n}].value", ident.get("value")
    for i, fld, n, ref in _refs(view):
        if isinstance(ref, dict) and "reference" not in ref and _is_hpr(ref.get("identifier")):
            at = fld if n is None else f"{fld}[{n}]"
            yield f"Bundle.entry[{i}].resource.{at}.identifier.value", ref["identifier"].get("value")


@rule("HPR-FORMAT", "error",
      en="HPR number is not 7 to 9 digits.",
      nb="HPR-nummeret er ikke 7 til 9 siffer.")
def hpr_format(bundle, ctx):
    """Every HPR number given for a requester, performer or collector is 7–9 digits."""
    for loc, value in hpr_identifiers(view_of(bundle, ctx)):
        if not isinstance(value, str) or not ids.check_hpr(value.strip()).valid:
            yield hpr_format.issue(loc)


ORG_SYSTEMS = frozenset({systems.ENH, "http://hl7.no/fhir/NamingSystem/ENH"})
HER_SYSTEMS = frozenset({systems.HER, "http://hl7.no/fhir/NamingSystem/HER"})


def _org_identifiers(view: BundleView, wanted: frozenset[str]) -> Iterator[tuple[str, object]]:
    """(location, value) of identifiers in ``wanted`` systems on any resource in the bundle."""
    for i, res in view.resources:
        for n, ident in enumerate(as_list(res.get("identifier"))):
            system = ident.get("system") if isinstance(ident, dict) else None
            if isinstance(system, str) and system in wanted:   # hostile input: system may be any JSON
                yield f"Bundle.entry[{i}].resource.identifier[{n}].value", ident.get("value")


@rule("ORGNR-INVALID", "error",
      en="Organisation number is not 9 digits with a valid mod-11 check digit.",
      nb="Organisasjonsnummeret er ikke 9 siffer med gyldig kontrollsiffer (modulus 11).")
def orgnr_invalid(bundle, ctx):
    """Every organisation number (ENH, Enhetsregisteret) in the bundle is 9 digits
    with a right mod-11 check digit."""
    for loc, value in _org_identifiers(view_of(bundle, ctx), ORG_SYSTEMS):
        if not isinstance(value, str) or not ids.check_org_number(value.strip()).valid:
            yield orgnr_invalid.issue(loc)


@rule("HER-ID-FORMAT", "error",
      en="HER-id is not a number.",
      nb="HER-id er ikke et tall.")
def her_id_format(bundle, ctx):
    """Every HER-id (Adresseregisteret) in the bundle is digits only; it has no check digit."""
    for loc, value in _org_identifiers(view_of(bundle, ctx), HER_SYSTEMS):
        if not isinstance(value, str) or not ids.check_her_id(value.strip()).valid:
            yield her_id_format.issue(loc)
