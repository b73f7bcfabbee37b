"""Property tests of the untrusted-input checks: any JSON value gives issues
or passes, never an exception."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.fhir import intake
from mappings.issue import Issue

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceType", "status", "intent", "subject", "code", "entry", "resource",
                         "reference", "identifier", "value", "type", "x"]), children, max_size=5),
    max_leaves=30)

resource_types = st.sampled_from(["ServiceRequest", "Specimen", "Patient", "Bundle", "Observation",
                                  "DiagnosticReport", "Task", "NoSuchType", ""])


@settings(max_examples=300, deadline=None)
@given(resource_types, st.dictionaries(st.sampled_from(
    ["status", "intent", "subject", "code", "specimen", "request", "basedOn", "focus", "entry", "type",
     "identifier", "colour", "contained"]), json_values, max_size=6))
def test_check_resource_never_raises(rtype, body):
    res = {"resourceType": rtype, **body}
    issues = intake.check_resource(res, rtype or "Resource")
    assert all(isinstance(i, Issue) and i.rejects and i.code for i in issues)
    if body.get("entry") is not None or rtype == "Bundle":
        assert all(isinstance(i, Issue) for i in intake.check_bundle(res, {"ServiceRequest"}))
    assert all(isinstance(i, Issue) for i in intake.resource_references(res, "R"))


def test_nested_resource_of_unknown_type_is_an_issue():
    """fhir.resources raises KeyError here; it must become an issue, not a 500."""
    res = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
           "subject": {"reference": "Patient/1"}, "contained": [{"resourceType": "Nope"}]}
    [found] = intake.check_resource(res, "ServiceRequest")
    assert found.code == "FHIR-STRUCTURE" and found.rejects
