"""Findings on the bundle are reported at their v2 segment and field."""
from __future__ import annotations

from mappings.hl7v2.locations import at_v2_locations, v2_location
from mappings.hl7v2.parser import parse
from mappings.hl7v2.to_fhir import to_bundle
from mappings.issue import Issue

MSG = "\r".join([
    "MSH|^~\\&|A|B|C|D|20250314||ORU^R01^ORU_R01|X|P|2.5.1",
    "PID|1||13116900216^^^^NNNOR||Nordmann^Kari",
    "OBR|1|P1||CRP^CRP^L|||202503140800",
    "OBX|1|NM|CRP^CRP^L||4|mg/L|||||F",
    "OBX|2|NM|HB^Hb^L||14|g/dL|||||F",
    "SPM|1|S1||SER",
]) + "\r"


def _sources() -> tuple[dict, list[str]]:
    sources: list[str] = []
    bundle, _ = to_bundle(parse(MSG.encode()), sources=sources)
    return bundle, sources


def test_every_entry_has_its_segment():
    bundle, sources = _sources()
    assert len(sources) == len(bundle["entry"])
    kinds = {(e["resource"]["resourceType"], s) for e, s in zip(bundle["entry"], sources)}
    assert {("Patient", "PID[1]"), ("ServiceRequest", "OBR[1]"), ("Specimen", "SPM[1]"),
            ("Observation", "OBX[1]"), ("Observation", "OBX[2]"),
            ("DiagnosticReport", "OBR[1]")} <= kinds


def test_fhirpath_becomes_segment_and_field():
    bundle, sources = _sources()
    hb = next(k for k, e in enumerate(bundle["entry"])
              if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "HB")
    assert v2_location(f"Bundle.entry[{hb}].resource.valueQuantity.value", sources) == "OBX[2]-5"
    assert v2_location("Bundle.entry[0].resource.identifier[0]", sources) == "PID[1]-3"
    assert v2_location(f"Bundle.entry[{hb}].resource.meta", sources) == "OBX[2]"
    assert v2_location("Bundle.entry[99].resource.code", sources) == \
        "Bundle.entry[99].resource.code"
    assert v2_location("PID-3", sources) == "PID-3"


def test_issues_are_rewritten_and_others_kept():
    _, sources = _sources()
    kept = Issue("warning", "X", "OBX[1]-5", "t")
    moved = Issue("error", "Y", "Bundle.entry[0].resource.birthDate", "t", "nb")
    assert at_v2_locations([kept, moved], sources) == [
        kept, Issue("error", "Y", "PID[1]-7", "t", "nb")]
