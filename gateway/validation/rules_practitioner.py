"""Requester and performer identifier rules (DOMAIN.md §1.3)."""
from __future__ import annotations

from functools import lru_cache
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


def _logical_refs(view: BundleView) -> Iterator[tuple[int, str, int | None, dict]]:
    """(entry index, field path, list position or None, reference) of every actor
    reference that names its target by identifier only (no ``reference``)."""
    by_type = view.by_type
    for rtype, fld in _ACTOR_FIELDS:
        for i, res in by_type.get(rtype, ()):
            value = res.get(fld)
            if isinstance(value, list):
                for n, ref in enumerate(value):
                    if isinstance(ref, dict) and "reference" not in ref:
                        yield i, fld, n, ref
            elif isinstance(value, dict) and "reference" not in value:
                yield i, fld, None, value
    for i, res in by_type.get("Specimen", ()):
        col = res.get("collection")
        if isinstance(col, dict):
            ref = col.get("collector")
            if isinstance(ref, dict) and "reference" not in ref:
                yield i, "collection.collector", None, ref
    for i, res in by_type.get("PractitionerRole", ()):
        ref = res.get("practitioner")
        if isinstance(ref, dict) and "reference" not in ref:
            yield i, "practitioner", None, ref


def _is_hpr(ident) -> bool:
    if not isinstance(ident, dict):
        return False
    system = ident.get("system")
    return isinstance(system, str) and system in HPR_SYSTEMS


def _hpr_values(view: BundleView) -> Iterator[tuple[object, int, str | None, int | None]]:
    """(value, entry index, reference field, list position) of every HPR identifier;
    the field is None for a Practitioner's own identifier (position: identifier[n])."""
    for i, res in view.by_type.get("Practitioner", ()):
        for n, ident in enumerate(as_list(res.get("identifier"))):
            if _is_hpr(ident):
                yield ident.get("value"), i, None, n
    for i, fld, n, ref in _logical_refs(view):
        if _is_hpr(ref.get("identifier")):
            yield ref["identifier"].get("value"), i, fld, n


def _hpr_location(i: int, fld: str | None, n: int | None) -> str:
    if fld is None:
        return f"Bundle.entry[{i}].resource.identifier[{n}].value"
    at = fld if n is None else f"{fld}[{n}]"
    return f"Bundle.entry[{i}].resource.{at}.identifier.value"


def hpr_identifiers(view: BundleView) -> Iterator[tuple[str, object]]:
    """(location, value) of every HPR identifier on Practitioners and logical references."""
    for value, i, fld, n in _hpr_values(view):
        yield _hpr_location(i, fld, n), value


@lru_cache(maxsize=4096)   # a few hundred practitioners send most messages
def _hpr_valid(value: str) -> bool:
    return ids.check_hpr(value.strip()).valid


@rule("HPR-FORMAT", "error",
      en="HPR number is not 7 to 9 digits.",
      nb="HPR-nummeret er ikke 7 til 9 siffer.")
def hpr_format(bundle, ctx):
    """Every HPR number given for a requester, performer or collector is 7–9 digits."""
    for value, i, fld, n in _hpr_values(view_of(bundle, ctx)):
        if not isinstance(value, str) or not _hpr_valid(value):
            yield hpr_format.issue(_hpr_location(i, fld, n))


ORG_SYSTEMS = frozenset({systems.ENH, "http://hl7.no/fhir/NamingSystem/ENH"})
HER_SYSTEMS = frozenset({systems.HER, "http://hl7.no/fhir/NamingSystem/HER"})
_ORG_AND_HER_SYSTEMS = ORG_SYSTEMS | HER_SYSTEMS


def _org_identifiers(view: BundleView, wanted: frozenset[str]) -> Iterator[tuple[str, object]]:
    """(location, value) of identifiers in ``wanted`` systems on any resource in the bundle."""
    for i, n, system, value in _organisation_identifiers(view):
        if system in wanted:
            yield f"Bundle.entry[{i}].resource.identifier[{n}].value", value


def _organisation_identifiers(view: BundleView) -> list[tuple[int, int, str, object]]:
    """(entry index, identifier index, system, value) of every ENH or HER identifier
    in the bundle: one scan of all identifiers shared by ORGNR-INVALID and HER-ID-FORMAT."""
    found = view.memo.get("org_ids")
    if found is None:
        found = []
        for i, res in view.resources:
            idents = res.get("identifier")
            if not isinstance(idents, list):
                continue
            for n, ident in enumerate(idents):
                system = ident.get("system") if isinstance(ident, dict) else None
                # hostile input: system may be any JSON, so check it is a string first
                if isinstance(system, str) and system in _ORG_AND_HER_SYSTEMS:
                    found.append((i, n, system, ident.get("value")))
        view.memo["org_ids"] = found
    return found


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
