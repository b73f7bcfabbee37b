"""POCT1-A observation messages -> FHIR R4 transaction bundles and QC events."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from fhir.resources.R4B.bundle import Bundle
from adapters.poct1a.xml import parse_message
from mappings import systems
from mappings.issue import rejects
from mappings.poct1a import poct_to_bundle
from mappings.values import parse_datetime, parse_number, same_unit, ucum


def resources(bundle, kind):
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == kind]


def codes(issues):
    return [i.code for i in issues]


def test_e2_crp_maps_to_npu19748_mg_per_l(domain_examples, code_map):
    bundle, issues, qc = poct_to_bundle(domain_examples["E2"], code_map=code_map, device_id="000987")
    assert issues == [] and qc == []
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"] == [{"system": systems.FNR, "value": "13116900216"}]
    (obs,) = resources(bundle, "Observation")
    assert obs["code"]["coding"][0] == {"system": systems.NLK, "code": "NPU19748",
                                        "display": "P-C-Reaktivt protein"}
    assert {"system": systems.LOINC, "code": "1988-5"} in obs["code"]["coding"]
    assert obs["valueQuantity"] == {"value": 27, "unit": "mg/L", "system": systems.UCUM, "code": "mg/L"}
    assert obs["effectiveDateTime"] == "2025-03-14T09:30:55+01:00"
    assert obs["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time",
                                 "valueDateTime": "2025-03-14T09:30:55+01:00"}]
    assert obs["performer"][0]["identifier"]["value"] == "OP017"
    assert obs["method"]["coding"][0]["code"] == "M"
    assert "lot 10012345" in obs["note"][0]["text"]
    (device,) = resources(bundle, "Device")
    assert device["identifier"][0]["value"] == "000987"
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    assert obs["subject"]["reference"] == urls["Patient"] and obs["device"]["reference"] == urls["Device"]
    assert all(u.startswith("urn:uuid:") for u in urls.values())
    assert bundle["timestamp"] == "2025-03-14T09:31:10+01:00"
    assert bundle["identifier"]["value"] == "10027"


def test_mapping_is_deterministic_and_accepts_parsed_messages(domain_examples, code_map):
    a = poct_to_bundle(domain_examples["E2"], code_map=code_map, device_id="000987")[0]
    b = poct_to_bundle(parse_message(domain_examples["E2"]), code_map=code_map, device_id="000987")[0]
    c = poct_to_bundle(domain_examples["E2"].decode(), code_map=code_map, device_id="000988")[0]
    assert a == b and a["entry"][2]["fullUrl"] != c["entry"][2]["fullUrl"]


def test_hba1c_maps_to_npu27300_mmol_per_mol(device_msg, code_map):
    data = device_msg("OBS.R01", "7", code="HbA1c", value="48", unit="mmol/mol", patient="41019044120")
    bundle, issues, qc = poct_to_bundle(data, code_map=code_map, device_id="SIM-1")
    assert issues == [] and qc == []
    Bundle.model_validate(bundle)
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"][0]["system"] == systems.DNR
    (obs,) = resources(bundle, "Observation")
    assert obs["code"]["coding"][0]["code"] == "NPU27300"
    assert obs["valueQuantity"]["code"] == "mmol/mol" and obs["valueQuantity"]["value"] == 48


def test_e3_qc_becomes_a_qc_event_not_an_observation(domain_examples, code_map):
    bundle, issues, qc = poct_to_bundle(domain_examples["E3"], code_map=code_map, device_id="000987")
    assert issues == [] and resources(bundle, "Observation") == [] and resources(bundle, "Patient") == []
    Bundle.model_validate(bundle)
    assert qc == [{
        "role": "LQC", "control_id": "10031", "device_serial": "000987", "analysis_code": "CRP",
        "code_system": "ACME", "nlk": "NPU19748", "value": 41, "comparator": None,
        "value_text": "41", "unit": "mg/L", "control_name": "CRP Control II",
        "control_lot": "CII-55821", "control_level": "II", "control_expiration": "2025-09-30",
        "reagent_lot": None, "operator": "OP017", "time": "2025-03-14T07:55:20+01:00"}]


def test_qc_role_inside_obs_r01_is_not_a_patient_result(device_msg, code_map):
    data = device_msg("OBS.R01", "8", role="CAL", patient=None)
    bundle, issues, qc = poct_to_bundle(data, code_map=code_map, device_id="D")
    assert resources(bundle, "Observation") == [] and qc[0]["role"] == "CAL"


def test_unknown_code_is_an_error(device_msg, code_map):
    bundle, issues, qc = poct_to_bundle(device_msg("OBS.R01", "9", code="LACT"), code_map=code_map,
                                        device_id="D")
    assert codes(issues) == ["POCT1A-UNKNOWN-OBSERVATION-CODE"] and rejects(issues)
    assert issues[0].location == "SVC[1]/OBS[1]/OBS.observation_id" and issues[0].text_nb
    assert resources(bundle, "Observation") == []
    Bundle.model_validate(bundle)


def test_unknown_code_in_qc_is_an_error_too(device_msg, code_map):
    _, issues, qc = poct_to_bundle(device_msg("OBS.R02", "9", role="LQC", patient=None, code="X"),
                                   code_map=code_map, device_id="D")
    assert codes(issues) == ["POCT1A-UNKNOWN-OBSERVATION-CODE"] and qc[0]["nlk"] is None


def test_code_map_may_qualify_by_coding_system(device_msg):
    cmap = {"ACME:CRP": {"nlk": "NPU19748", "unit": "mg/L"}}
    bundle, issues, _ = poct_to_bundle(device_msg("OBS.R01", "1"), code_map=cmap, device_id="D")
    assert issues == [] and resources(bundle, "Observation")[0]["code"]["coding"][0]["code"] == "NPU19748"


@pytest.mark.parametrize("value,unit,code", [
    ("", "mg/L", "POCT1A-VALUE-MISSING"),
    ("high", "mg/L", "POCT1A-VALUE-NOT-NUMERIC"),
    ("27", "mmol/L", "POCT1A-UNIT-MISMATCH"),
])
def test_bad_values_are_errors(device_msg, code_map, value, unit, code):
    bundle, issues, _ = poct_to_bundle(device_msg("OBS.R01", "1", value=value, unit=unit),
                                       code_map=code_map, device_id="D")
    assert codes(issues) == [code] and resources(bundle, "Observation") == []


def test_comparator_and_decimal_comma(device_msg, code_map):
    bundle, issues, _ = poct_to_bundle(device_msg("OBS.R01", "1", value="<5,0"), code_map=code_map,
                                       device_id="D")
    assert issues == []
    assert resources(bundle, "Observation")[0]["valueQuantity"]["comparator"] == "<"
    assert resources(bundle, "Observation")[0]["valueQuantity"]["value"] == 5.0
    Bundle.model_validate(bundle)


def test_qualitative_value_becomes_value_string(code_map):
    data = (b'<OBS.R01><HDR><HDR.control_id V="1"/></HDR><SVC><SVC.role_cd V="OBS"/>'
            b'<SVC.observation_dttm V="2025-03-14T09:30:55+01:00"/><PT><PT.patient_id V="13116900216"/>'
            b'<OBS><OBS.observation_id V="CRP"/><OBS.qualitative_value V="Positive"/></OBS></PT></SVC></OBS.R01>')
    bundle, issues, _ = poct_to_bundle(data, code_map=code_map, device_id="D")
    assert issues == [] and resources(bundle, "Observation")[0]["valueString"] == "Positive"


def test_patient_id_rules(device_msg, code_map):
    _, issues, _ = poct_to_bundle(device_msg("OBS.R01", "1", patient=None), code_map=code_map,
                                  device_id="D")
    assert codes(issues) == ["POCT1A-PATIENT-ID-MISSING"]
    bundle, issues, _ = poct_to_bundle(device_msg("OBS.R01", "1", patient="13116900217"),
                                       code_map=code_map, device_id="D")
    assert codes(issues) == ["POCT1A-PATIENT-ID-CHECKSUM"] and not rejects(issues)
    assert resources(bundle, "Patient")[0]["identifier"][0]["system"] == "urn:labgate:patient:D"
    bundle, _, _ = poct_to_bundle(device_msg("OBS.R01", "1", patient="ROOM 12 BED 3"),
                                  code_map=code_map, device_id="D")
    assert resources(bundle, "Patient")[0]["identifier"][0]["value"] == "ROOM 12 BED 3"


def test_time_rules(code_map):
    def msg(dttm):
        return (b'<OBS.R01><HDR><HDR.control_id V="1"/></HDR><SVC>' + dttm
                + b'<PT><PT.patient_id V="13116900216"/><OBS><OBS.observation_id V="CRP"/>'
                  b'<OBS.value V="5" U="mg/L"/></OBS></PT></SVC></OBS.R01>')
    _, issues, _ = poct_to_bundle(msg(b""), code_map=code_map, device_id="D")
    assert codes(issues) == ["POCT1A-OBSERVATION-TIME-MISSING"]
    _, issues, _ = poct_to_bundle(msg(b'<SVC.observation_dttm V="yesterday"/>'), code_map=code_map,
                                  device_id="D")
    assert codes(issues) == ["POCT1A-DATETIME-INVALID"]
    bundle, issues, _ = poct_to_bundle(msg(b'<SVC.observation_dttm V="2025-07-01T12:00:00"/>'),
                                       code_map=code_map, device_id="D")
    assert codes(issues) == ["POCT1A-DATETIME-NO-TIMEZONE"] and not rejects(issues)
    assert resources(bundle, "Observation")[0]["effectiveDateTime"] == "2025-07-01T12:00:00+02:00"
    Bundle.model_validate(bundle)


def test_no_device_is_a_warning(domain_examples, code_map):
    bundle, issues, _ = poct_to_bundle(domain_examples["E2"], code_map=code_map)
    assert codes(issues) == ["POCT1A-DEVICE-UNKNOWN"] and resources(bundle, "Device") == []
    Bundle.model_validate(bundle)


def test_wrong_message_types_and_hostile_input(domain_examples, code_map):
    _, issues, _ = poct_to_bundle(domain_examples["E1"], code_map=code_map)
    assert codes(issues) == ["POCT1A-NOT-OBSERVATION"] and issues[0].severity == "fatal"
    _, issues, _ = poct_to_bundle(b"<OBS.R01><HDR></HDR></OBS.R01>", code_map=code_map, device_id="D")
    assert codes(issues) == ["POCT1A-NO-OBSERVATIONS"]
    for hostile in (b'<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>', b"<OBS.R01>", b"\xff\xfe",
                    b"<a>" * 100_000, b"<r>" + b"x" * 2_000_000 + b"</r>"):
        bundle, issues, qc = poct_to_bundle(hostile, code_map=code_map)
        assert codes(issues) == ["POCT1A-XML-INVALID"] and qc == []
        Bundle.model_validate(bundle)


def test_value_helpers():
    assert parse_number("27") == (None, 27) and parse_number(">=3.5") == (">=", 3.5)
    assert parse_number("1e3") == (None, 1000.0) and parse_number("27 mg") is None
    assert ucum("10E9/L") == "10*9/L" and ucum(None) is None
    assert same_unit("0", "1") and same_unit(None, "mg/L") and not same_unit("g/L", "mg/L")
    assert parse_datetime("20250314093055+0100", "Europe/Oslo") == ("2025-03-14T09:30:55+01:00", False)
    assert parse_datetime("2025-03-14T09:30:55Z", "Europe/Oslo") == ("2025-03-14T09:30:55+00:00", False)


@settings(max_examples=50, deadline=None)
@given(value=st.decimals(min_value=-10_000, max_value=10_000, places=2, allow_nan=False),
       code=st.sampled_from(["HbA1c", "CRP", "INR"]))
def test_any_numeric_value_maps_to_a_valid_bundle(device_msg, code_map, value, code):
    unit = code_map[code]["unit"]
    bundle, issues, _ = poct_to_bundle(device_msg("OBS.R01", "1", code=code, value=str(value), unit=unit),
                                       code_map=code_map, device_id="D")
    assert issues == []
    Bundle.model_validate(bundle)
    assert float(resources(bundle, "Observation")[0]["valueQuantity"]["value"]) == float(value)


@pytest.mark.parametrize("text, expected, assumed", [
    ("202503140925", "2025-03-14T09:25:00+01:00", True),          # was read as 09:02:05
    ("202503140925+0100", "2025-03-14T09:25:00+01:00", False),
    ("20250314092510", "2025-03-14T09:25:10+01:00", True),
    ("2025-03-14T09:25:00+01:00", "2025-03-14T09:25:00+01:00", False),
    ("2025-03-14", "2025-03-14", False),                          # a date stays a date
    ("20250314", "2025-03-14", False),
    ("2025031409", "2025-03-14T09:00:00+01:00", True),             # as HL7 v2 reads it
    ("20251314", None, False),
])
def test_device_times_keep_their_precision(text, expected, assumed):
    assert parse_datetime(text, "Europe/Oslo") == (expected, assumed)


@pytest.mark.parametrize("unit", ["1", "INR", "{INR}"])
def test_code_map_unit_aliases_are_honoured(domain_examples, unit):
    from mappings.codemaps import load_code_map
    xml = domain_examples["E2"].replace(b'V="CRP" SN="ACME"', b'V="INR"') \
        .replace(b'<OBS.value V="27" U="mg/L"/>', b'<OBS.value V="2.4" U="' + unit.encode() + b'"/>')
    bundle, issues, _ = poct_to_bundle(xml, code_map=load_code_map("inr-poc"), device_id="000987")
    assert not rejects(issues), [i.code for i in issues]
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert obs["code"]["coding"][0]["code"] == "NPU01685"


def test_odd_whitespace_becomes_a_plain_space_so_the_bundle_stays_valid_fhir(code_map):
    data = ('<OBS.R01><HDR><HDR.control_id V="1"/></HDR><SVC><SVC.role_cd V="OBS"/>'
            '<SVC.observation_dttm V="2025-03-14T09:30:55+01:00"/><PT><PT.patient_id V="13116900216"/>'
            '<OBS><OBS.observation_id V="CRP"/><OBS.qualitative_value V="Posi\u00a0tive"/></OBS>'
            '</PT></SVC></OBS.R01>').encode()
    bundle, issues, _ = poct_to_bundle(data, code_map=code_map, device_id="D")
    Bundle.model_validate(bundle)
    assert resources(bundle, "Observation")[0]["valueString"] == "Posi tive"
