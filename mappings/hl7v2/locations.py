"""Findings on a mapped bundle, reported where they are in the v2 message.

Validation speaks FHIRPath ("Bundle.entry[4].resource.valueQuantity.value");
a v2 sender needs ERR-2 as segment/field ("OBX[1]-5"). ``to_bundle(...,
sources=...)`` records the segment of every entry; this module adds the
field from the element path.
"""
from __future__ import annotations

import re

from ..issue import Issue

_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]\.resource(?:\.([A-Za-z]+))?")

# (segment name, FHIR element) → v2 field
_FIELDS = {
    ("PID", "identifier"): 3, ("PID", "name"): 5, ("PID", "birthDate"): 7, ("PID", "gender"): 8,
    ("OBX", "code"): 3, ("OBX", "valueQuantity"): 5, ("OBX", "valueString"): 5,
    ("OBX", "valueCodeableConcept"): 5, ("OBX", "valueRange"): 5, ("OBX", "valueRatio"): 5,
    ("OBX", "valueDateTime"): 5, ("OBX", "referenceRange"): 7, ("OBX", "interpretation"): 8,
    ("OBX", "status"): 11, ("OBX", "effectiveDateTime"): 14, ("OBX", "performer"): 16,
    ("OBX", "method"): 17, ("OBX", "device"): 18, ("OBX", "issued"): 19, ("OBX", "extension"): 19,
    ("OBR", "code"): 4, ("OBR", "identifier"): 2, ("OBR", "requester"): 16,
    ("OBR", "effectiveDateTime"): 7, ("OBR", "issued"): 22, ("OBR", "status"): 25,
    ("OBR", "collection"): 7,
    ("SPM", "identifier"): 2, ("SPM", "type"): 4, ("SPM", "collection"): 17,
    ("SPM", "receivedTime"): 18,
}


def v2_location(location: str, sources: list[str]) -> str:
    """"OBX[1]-5" for a FHIRPath into entry k whose segment is known; else unchanged."""
    m = _ENTRY.match(location)
    if not m:
        return location
    k = int(m.group(1))
    if k >= len(sources) or not sources[k]:
        return location
    seg = sources[k]
    field = _FIELDS.get((seg[:3], m.group(2) or ""))
    return f"{seg}-{field}" if field else seg


def at_v2_locations(issues: list[Issue], sources: list[str]) -> list[Issue]:
    """The issues with FHIRPath locations rewritten to v2 ones (others unchanged)."""
    out = []
    for i in issues:
        loc = v2_location(i.location, sources)
        out.append(i if loc == i.location else
                   Issue(i.severity, i.code, loc, i.text, i.text_nb))
    return out
