"""validate(): settings, lookups, robustness, documentation coverage."""
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.validation import RULES, RuleContext, check_settings, validate
from mappings import systems
from mappings.issue import rejects
from mappings.tables_loader import default_tables

DOCS = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_e9_legevakt_crp_and_hb_passes(h):
    """DOMAIN.md E9 as a canonical bundle: CRP 27 mg/L + Hb 11.2 g/dL, capillary."""
    b = h.B()
    pat = b.patient("13116900216")
    b.service_request(pat, requester=b.practitioner("9144889"))
    sp = b.specimen("BLDC", patient=pat)
    op = b.practitioner("OP017", "urn:labgate:operator:POCDM")
    b.observation("NPU19748", 27, "mg/L", loinc="1988-5", patient=pat, specimen=sp,
                  performer=op, device=b.device("AF2-000987"),
                  analysed="2025-03-14T09:30:55+01:00")
    b.observation("NOR05172", 11.2, "g/dL", loinc="718-7", patient=pat, specimen=sp,
                  performer=op, device=b.device("HB-5521"),
                  analysed="2025-03-14T09:29:00+01:00")
    assert validate(b.bundle(), h.ctx()) == []


def test_e10_blood_gas_with_critical_lactate(h):
    """DOMAIN.md E10: D-number patient, venous blood gas, lactate 4.6 (>= 4)."""
    b = h.B()
    pat = b.patient("41019044120", systems.DNR)
    sp = b.specimen("BLDV", collected="2025-03-14T22:09:00+01:00", patient=pat)
    kw = dict(system=systems.LOINC, patient=pat, specimen=sp,
              effective="2025-03-14T22:09:00+01:00", analysed="2025-03-14T22:14:00+01:00")
    b.observation("2746-6", 7.29, "[pH]", **kw)
    b.observation("2021-4", 6.9, "kPa", **kw)
    b.observation("32693-4", 4.6, "mmol/L", **kw)
    b.observation("6298-4", 4.1, "mmol/L", **kw)
    bundle = b.bundle()
    issues = validate(bundle, h.ctx(now=datetime.fromisoformat("2025-03-14T22:15:10+01:00")))
    assert [(i.code, i.location) for i in issues] == [
        ("CRITICAL-VALUE", "Bundle.entry[4].resource.valueQuantity.value")]
    assert not rejects(issues)


@pytest.mark.parametrize("action,severity", [("warn", "warning"), ("reject", "error")])
def test_settings_change_severity(h, action, severity):
    bundle = h.poc("NPU99999", 1, "mg/L")
    issues = validate(bundle, h.ctx(settings={"ANALYSIS-UNKNOWN": action}))
    assert [(i.code, i.severity) for i in issues] == [("ANALYSIS-UNKNOWN", severity)]


def test_setting_off_skips_rule(h):
    assert h.codes(h.poc("NPU99999", 1, "mg/L"), h.ctx(settings={"ANALYSIS-UNKNOWN": "off"})) == []


def test_warn_turns_critical_into_reject_when_asked(h):
    bundle = h.poc("NPU03230", 7.0, "mmol/L", specimen_type="PLAS")
    issues = validate(bundle, h.ctx(settings={"CRITICAL-VALUE": "reject"}))
    assert rejects(issues)


def test_check_settings():
    assert check_settings({"QC-LOCKOUT": "warn", "CRITICAL-VALUE": "off"}) == []
    problems = check_settings({"NO-SUCH-RULE": "warn", "QC-LOCKOUT": "maybe"})
    assert len(problems) == 2
    assert "NO-SUCH-RULE" in problems[0] and "maybe" in problems[1]


def test_context_requires_aware_now():
    with pytest.raises(ValueError):
        RuleContext(now=datetime(2025, 3, 14, 10), tables=default_tables())


def test_every_rule_is_documented_with_both_texts():
    doc = DOCS.read_text(encoding="utf-8")
    for code, r in RULES.items():
        assert f"`{code}`" in doc, code
        assert r.text and r.text_nb and r.summary, code


def test_issue_round_trip(h):
    issue = validate(h.poc("NPU99999", 1, "mg/L"), h.ctx())[0]
    assert type(issue).from_dict(issue.to_dict()) == issue


# --- hostile input -------------------------------------------------------------

HOSTILE = [
    {}, {"entry": None}, {"entry": "x"}, {"entry": [None, 1, "x", []]},
    {"entry": [{"resource": {"resourceType": ["Observation"]}},
               {"fullUrl": ["u"], "resource": {"resourceType": "Patient", "id": {}}}]},
    {"entry": [{"resource": None}, {"resource": []}, {"fullUrl": 5, "resource": {}}]},
    {"entry": [{"resource": {"resourceType": "Observation", "code": "NPU19748",
                             "valueQuantity": "27", "specimen": "x", "performer": "x",
                             "extension": {"url": 1}, "effectiveDateTime": 12345}}]},
    {"entry": [{"resource": {"resourceType": "Observation",
                             "code": {"coding": [None, {"system": 1, "code": None},
                                                 {"system": systems.NLK, "code": "NPU19748"}]},
                             "valueQuantity": {"value": True, "code": ["mg/L"]},
                             "effectiveDateTime": "2025-13-45T99:99:99+01:00",
                             "interpretation": "HH", "referenceRange": [None, {"low": 3}]}},
               {"resource": {"resourceType": "Patient",
                             "identifier": [None, {"system": systems.FNR, "value": 13116900216}]}},
               {"resource": {"resourceType": "Specimen", "type": "B",
                             "collection": {"collectedDateTime": ["x"]}, "container": "edta"}}]},
    {"entry": [{"resource": {"resourceType": "Observation",
                             "code": {"coding": [{"system": systems.NLK, "code": "NPU03230"}]},
                             "valueQuantity": {"value": float("inf"), "code": "mmol/L"},
                             "effectiveDateTime": "2025-03-14T09:25:00+01:00"}}]},
]


@pytest.mark.parametrize("bundle", HOSTILE)
def test_hostile_structures_do_not_raise(h, bundle):
    ctx = h.ctx(qc_state=lambda d, a: None, operator_certified={})
    issues = validate(bundle, ctx)
    assert all(i.code in RULES for i in issues)


def test_large_bundle(h):
    b = h.B()
    pat = b.patient()
    sp = b.specimen(patient=pat)
    for _ in range(2000):
        b.observation(patient=pat, specimen=sp)
    assert validate({"resourceType": "Bundle", "type": "transaction", "entry": b.entries},
                    h.ctx()) == []


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.sampled_from(
                              ["resourceType", "code", "coding", "system", "value",
                               "valueQuantity", "specimen", "reference", "identifier",
                               "collection", "collectedDateTime", "effectiveDateTime",
                               "extension", "url", "performer", "device", "type", "unit",
                               "comparator", "hasMember", "subject", "container"]),
                              inner, max_size=5), max_leaves=25)
resource = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Observation", "Patient", "Specimen", "Practitioner",
                                      "ServiceRequest", "Device"])},
    optional={"code": json_value, "valueQuantity": json_value, "identifier": json_value,
              "specimen": json_value, "collection": json_value, "subject": json_value,
              "effectiveDateTime": json_value, "performer": json_value,
              "device": json_value, "extension": json_value, "type": json_value})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"fullUrl": st.sampled_from(["urn:uuid:a", "urn:uuid:b"]),
                                       "resource": resource}), max_size=6))
def test_fuzzed_bundles_never_raise(entries):
    ctx = RuleContext(now=datetime.fromisoformat("2025-03-14T10:00:00+01:00"),
                      tables=default_tables(), qc_state=lambda d, a: None,
                      operator_certified={"x": {"*"}})
    for issue in validate({"resourceType": "Bundle", "entry": entries}, ctx):
        assert issue.code in RULES


def test_identifier_and_coding_values_of_any_json_type_never_raise():
    """Regression (found by the property test above): a ``system`` or ``code``
    that is a list or object must not reach a set/dict lookup."""
    ctx = RuleContext(now=datetime.fromisoformat("2025-03-14T10:00:00+01:00"),
                      tables=default_tables())
    odd = [[], {}, 1, None, True]
    entries = [{"fullUrl": f"urn:uuid:{i}", "resource": {
        "resourceType": rt, "identifier": [{"system": v, "value": v}],
        "code": {"coding": [{"system": v, "code": v}]}}}
        for i, (rt, v) in enumerate((rt, v) for rt in ("Observation", "Organization", "Patient")
                                   for v in odd)]
    for issue in validate({"resourceType": "Bundle", "entry": entries}, ctx):
        assert issue.code in RULES
