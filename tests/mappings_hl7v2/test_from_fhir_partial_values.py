"""FHIR leaves the parts of a Quantity, Range and Ratio optional; the outbound
writer must write what is there (and leave the rest empty), never crash, and
fail with ValueError — which delivery dead-letters — for anything it cannot write."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mappings.hl7v2.from_fhir import bundle_to_oml_o21, bundle_to_oru_r01
from mappings.hl7v2.parser import parse

NOW = datetime(2025, 3, 14, 9, 0, tzinfo=timezone.utc)


def _bundle(value: dict, reference_range: list | None = None) -> dict:
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
           "subject": {"reference": "urn:uuid:p"}, **value}
    if reference_range is not None:
        obs["referenceRange"] = reference_range
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
          "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
          "subject": {"reference": "urn:uuid:p"}, "supportingInfo": [{"reference": "urn:uuid:o"}]}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient"}},
        {"fullUrl": "urn:uuid:s", "resource": sr},
        {"fullUrl": "urn:uuid:o", "resource": obs}]}


@pytest.mark.parametrize("value, obx5", [
    ({"valueQuantity": {"unit": "cm"}}, ""),
    ({"valueQuantity": {"value": 172, "unit": "cm"}}, "172"),
    ({"valueRange": {"low": {"value": 1}}}, "^1^-"),
    ({"valueRatio": {"numerator": {"value": 1}}}, "^1^:"),
])
@pytest.mark.parametrize("build", [bundle_to_oru_r01, bundle_to_oml_o21])
def test_missing_optional_parts_are_written_empty(build, value, obx5):
    out = build(_bundle(value), control_id="C1", timestamp=NOW)
    assert parse(out).segments_named("OBX")[0].fields[5] == obx5


@pytest.mark.parametrize("reference_range, obx7", [
    ({"low": {"unit": "cm"}, "high": {"value": 200}}, "<200"),
    ({"low": {"value": 150}, "high": {"unit": "cm"}}, ">150"),
    ({"low": {"value": 150}, "high": {"value": 200}}, "150-200"),
])
def test_one_sided_reference_ranges(reference_range, obx7):
    out = bundle_to_oru_r01(_bundle({"valueQuantity": {"value": 172}}, [reference_range]),
                            control_id="C1", timestamp=NOW)
    assert parse(out).segments_named("OBX")[0].fields[7] == obx7


def test_unwritable_payload_is_a_value_error():
    bundle = _bundle({"valueQuantity": {"value": 1}})
    bundle["entry"][2]["resource"]["code"] = {"coding": "not a list"}
    with pytest.raises(ValueError, match="cannot write"):
        bundle_to_oru_r01(bundle, control_id="C1", timestamp=NOW)
