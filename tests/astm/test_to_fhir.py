"""ASTM -> FHIR mapping: E5 HbA1c, E6 INR (D-nummer), E7 QC, CRP, and the edge cases."""
from __future__ import annotations

from datetime import datetime

import pytest
from fhir.resources.R4B.bundle import Bundle

from adapters.astm.e1394 import parse_message
from adapters.astm.scenarios import crp_patient, crp_qc
from mappings import systems
from mappings.astm.to_fhir import ANALYSIS_TIME_EXT, astm_to_bundle
from astm_data import records


def mapped(data: bytes, code_map: dict, **kw):
    bundle, issues, qc = astm_to_bundle(parse_message(data), code_map=code_map, **kw)
    Bundle.model_validate(bundle)
    return bundle, issues, qc


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == kind]


def codes(issues) -> list[str]:
    return [i.code for i in issues]


def test_e5_hba1c(code_map):
    bundle, issues, qc = mapped(records("E5"), code_map)
    assert issues == [] and qc == []
    assert bundle["type"] == "transaction"
    assert bundle["timestamp"] == "2025-03-14T09:30:12+01:00"
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"] == [{"system": systems.FNR, "value": "13116900216"}]
    assert patient["name"] == [{"family": "Danser", "given": ["Line"]}]
    assert patient["birthDate"] == "1969-11-13" and patient["gender"] == "female"
    (specimen,) = resources(bundle, "Specimen")
    assert specimen["identifier"][0]["value"] == "LID0004711"
    assert specimen["collection"]["collectedDateTime"] == "2025-03-14T09:25:00+01:00"
    assert specimen["type"]["coding"][0] == {"system": systems.SPECIMEN_TYPE_8351, "code": "B",
                                             "display": "Blod"}
    (obs,) = resources(bundle, "Observation")
    assert obs["code"]["coding"][0] == {"system": systems.NLK, "code": "NPU27300",
                                        "display": "B-HbA1c"}
    assert {"system": systems.LOINC, "code": "59261-8"} in obs["code"]["coding"]
    assert obs["valueQuantity"] == {"value": 53, "unit": "mmol/mol", "system": systems.UCUM,
                                    "code": "mmol/mol"}
    assert obs["referenceRange"][0]["low"]["value"] == 20
    assert obs["referenceRange"][0]["high"]["value"] == 42
    assert obs["interpretation"][0]["coding"][0] == {"system": systems.V3_INTERPRETATION,
                                                     "code": "H"}
    assert obs["status"] == "final"
    assert obs["effectiveDateTime"] == specimen["collection"]["collectedDateTime"]
    assert obs["issued"] == "2025-03-14T09:30:00+01:00"
    assert obs["performer"][0]["identifier"]["value"] == "OP017"
    assert obs["note"] == [{"text": "Reagent lot 1234567 exp 20260131"}]
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    assert obs["subject"] == {"reference": urls["Patient"]}
    assert obs["specimen"] == {"reference": urls["Specimen"]}
    assert obs["device"] == {"reference": urls["Device"]}
    (device,) = resources(bundle, "Device")
    assert device["identifier"][0]["value"] == "SN12345678"


def test_e6_inr_with_d_nummer(code_map):
    bundle, issues, qc = mapped(records("E6"), code_map)
    assert issues == [] and qc == []
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"] == [{"system": systems.DNR, "value": "41019044120"}]
    (obs,) = resources(bundle, "Observation")
    assert obs["valueQuantity"] == {"value": 3.4, "unit": "INR", "system": systems.UCUM,
                                    "code": "1"}
    assert obs["referenceRange"][0]["low"]["value"] == 2.0
    assert obs["effectiveDateTime"] == "2025-03-14T10:12:00+01:00"
    (specimen,) = resources(bundle, "Specimen")
    assert "identifier" not in specimen


def test_e7_qc_is_a_qc_event_not_an_observation(code_map):
    bundle, issues, qc = mapped(records("E7"), code_map)
    assert issues == []
    assert resources(bundle, "Observation") == [] and resources(bundle, "Patient") == []
    assert qc == [{
        "instrument_serial": "AF2-000987", "instrument_model": "CRP-POC",
        "instrument_code": "CRP", "analysis_code": "NPU19748", "value": 27,
        "comparator": None, "value_text": "27", "unit": "mg/L", "reference_range": "22-34",
        "flag": None, "status": "F", "material": "CI-LOT 10012345", "lot": "10012345",
        "operator": "OP017", "time": "2025-03-14T07:54:00+01:00"}]


def test_crp_maps_to_npu19748_in_mg_per_l(code_map):
    now = datetime(2025, 3, 14, 9, 31, 0)
    bundle, issues, qc = mapped(crp_patient(now), code_map)
    assert issues == [] and qc == []
    (obs,) = resources(bundle, "Observation")
    assert obs["code"]["coding"][0]["code"] == "NPU19748"
    assert obs["valueQuantity"]["code"] == "mg/L" and obs["valueQuantity"]["value"] == 27
    assert obs["referenceRange"] == [{"text": "<5", "high": {
        "value": 5, "unit": "mg/L", "system": systems.UCUM, "code": "mg/L"}}]


def test_qc_is_recognised_by_order_action_code_alone(code_map):
    data = records("E7").replace(b"|||||||Q|1|", b"|||||||P|1|")
    _, _, qc = mapped(data, code_map)
    assert len(qc) == 1


@pytest.mark.parametrize("specimen", [b"QC-LEVEL1", b"CTRL 2", b"Kontroll 1"])
def test_qc_is_recognised_by_material_pattern(code_map, specimen):
    data = records("E5").replace(b"LID0004711", specimen)
    bundle, _, qc = mapped(data, code_map)
    assert len(qc) == 1 and resources(bundle, "Observation") == []


def test_qc_material_pattern_is_configurable(code_map):
    data = records("E5").replace(b"LID0004711", b"NOKLUS-EQA-7")
    _, _, qc = mapped(data, code_map, qc_material_pattern=r"^NOKLUS")
    assert len(qc) == 1
    _, _, qc = mapped(data, code_map)
    assert qc == []


def test_generated_qc_run_is_not_a_patient_result(code_map):
    bundle, issues, qc = mapped(crp_qc(datetime(2025, 3, 14, 8, 0)), code_map)
    assert issues == [] and len(qc) == 1 and "entry" not in bundle


def test_unknown_instrument_code_is_an_error(code_map):
    del code_map["HbA1c"]
    bundle, issues, _ = mapped(records("E5"), code_map)
    (issue,) = issues
    assert (issue.severity, issue.code, issue.location) == ("error", "ASTM-UNKNOWN-TEST-CODE",
                                                           "R[1]-3")
    assert resources(bundle, "Observation") == []


def test_unknown_code_in_a_qc_run_is_an_error_too(code_map):
    del code_map["CRP"]
    _, issues, qc = mapped(records("E7"), code_map)
    assert codes(issues) == ["ASTM-UNKNOWN-TEST-CODE"]
    assert qc[0]["analysis_code"] is None


def test_unit_mismatch_is_an_error(code_map):
    data = records("E5").replace(b"|mmol/mol|", b"|%|")
    _, issues, _ = mapped(data, code_map)
    assert codes(issues) == ["ASTM-UNIT-MISMATCH"]


def test_extra_unit_spellings_from_the_code_map_are_accepted(code_map):
    code_map["HbA1c"]["units"] = ["mmol/mol IFCC"]
    data = records("E5").replace(b"|mmol/mol|", b"|mmol/mol IFCC|")
    _, issues, _ = mapped(data, code_map)
    assert issues == []


def test_missing_value_and_text_values(code_map):
    _, issues, _ = mapped(records("E5").replace(b"|53|", b"||"), code_map)
    assert codes(issues) == ["ASTM-VALUE-MISSING"]
    _, issues, _ = mapped(records("E5").replace(b"|53|", b"|high|"), code_map)
    assert codes(issues) == ["ASTM-VALUE-NOT-NUMERIC"]
    code_map["HbA1c"].pop("unit")
    bundle, issues, _ = mapped(records("E5").replace(b"|53|", b"|Negative|"), code_map)
    assert issues == [] and resources(bundle, "Observation")[0]["valueString"] == "Negative"


def test_comparator_and_decimal_comma(code_map):
    bundle, _, _ = mapped(records("E5").replace(b"|53|", b"|>130,5|"), code_map)
    q = resources(bundle, "Observation")[0]["valueQuantity"]
    assert q["comparator"] == ">" and q["value"] == 130.5


def test_patient_id_checksum_failure_is_kept_as_a_local_id(code_map):
    bundle, issues, _ = mapped(records("E5").replace(b"13116900216", b"13116900217"), code_map)
    assert codes(issues) == ["ASTM-PATIENT-ID-CHECKSUM"]
    ident = resources(bundle, "Patient")[0]["identifier"][0]
    assert ident["system"] == systems.local_system("patient", "HBA1C-POC")
    assert all("13116900217" not in i.text for i in issues)


def test_h_nummer_and_fh_nummer_are_recognised(code_map):
    bundle, _, _ = mapped(records("E5").replace(b"13116900216", b"12528510033"), code_map)
    ident = resources(bundle, "Patient")[0]["identifier"][0]
    assert ident["system"] == systems.HNR and ident["type"]["coding"][0]["code"] == "HNR"


def test_missing_patient_id_is_an_error(code_map):
    bundle, issues, _ = mapped(records("E5").replace(b"P|1|13116900216|", b"P|1||"), code_map)
    assert codes(issues) == ["ASTM-PATIENT-ID-MISSING"]
    assert "subject" not in resources(bundle, "Observation")[0]


def test_patient_order_without_p_record_is_an_error(code_map):
    data = b"H|\\^&|||X^1^S1\rO|1|LID1||^^^CRP|R||20250314092500\rR|1|^^^CRP|5|mg/L\rL|1|N\r"
    _, issues, qc = mapped(data, code_map)
    assert codes(issues) == ["ASTM-PATIENT-ID-MISSING"] and qc == []


def test_lab_assigned_id_is_used_when_p3_is_empty(code_map):
    data = records("E5").replace(b"P|1|13116900216|", b"P|1||13116900216")
    bundle, issues, _ = mapped(data, code_map)
    assert issues == []
    assert resources(bundle, "Patient")[0]["identifier"][0]["system"] == systems.FNR


def test_missing_collection_time_is_not_replaced_by_the_analysis_time(code_map):
    data = records("E5").replace(b"|20250314092500|", b"||")
    bundle, issues, _ = mapped(data, code_map)
    assert codes(issues) == ["ASTM-COLLECTION-TIME-MISSING"]
    obs = resources(bundle, "Observation")[0]
    assert "effectiveDateTime" not in obs
    assert obs["extension"] == [{"url": ANALYSIS_TIME_EXT, "valueDateTime": "2025-03-14T09:30:00+01:00"}]


def test_analysis_time_extension_is_the_one_the_rules_read(code_map):
    from gateway.validation.fhir_ext import ANALYSIS_TIME_EXT as RULES_EXT
    assert ANALYSIS_TIME_EXT == RULES_EXT
    bundle, _, _ = mapped(records("E5"), code_map)
    obs = resources(bundle, "Observation")[0]
    assert obs["extension"] == [{"url": RULES_EXT, "valueDateTime": "2025-03-14T09:30:00+01:00"}]
    assert obs["effectiveDateTime"] == "2025-03-14T09:25:00+01:00"


def test_unreadable_time_is_a_warning(code_map):
    data = records("E5").replace(b"|20250314093000|", b"|2025-99|")
    bundle, issues, _ = mapped(data, code_map)
    assert codes(issues) == ["ASTM-DATETIME-INVALID"]
    assert "issued" not in resources(bundle, "Observation")[0]


@pytest.mark.parametrize("flag,status", [(b"C", "corrected"), (b"P", "preliminary"),
                                         (b"X", "cancelled"), (b"R", "final")])
def test_result_status(code_map, flag, status):
    data = records("E5").replace(b"|H||F||", b"|H||" + flag + b"||")
    bundle, _, _ = mapped(data, code_map)
    assert resources(bundle, "Observation")[0]["status"] == status


def test_unknown_status_and_flag_are_warnings(code_map):
    data = records("E5").replace(b"|H||F||", b"|ZZ||K||")
    bundle, issues, _ = mapped(data, code_map)
    assert codes(issues) == ["ASTM-RESULT-STATUS-UNKNOWN", "ASTM-ABNORMAL-FLAG-UNKNOWN"]
    obs = resources(bundle, "Observation")[0]
    assert obs["status"] == "unknown" and obs["interpretation"] == [{"text": "ZZ"}]


@pytest.mark.parametrize("flag", [b"L", b"HH", b"LL", b"<", b">", b"N", b"A"])
def test_abnormal_flags_map_to_v3_interpretation(code_map, flag):
    bundle, _, _ = mapped(records("E5").replace(b"|H||F||", b"|" + flag + b"||F||"), code_map)
    assert resources(bundle, "Observation")[0]["interpretation"][0]["coding"][0]["code"] == \
        flag.decode()


def test_device_id_is_used_when_the_message_names_no_serial(code_map):
    data = (b"H|\\^&|||CRP-POC\rP|1|13116900216\rO|1|LID9||^^^CRP|R||20250314092500\r"
            b"R|1|^^^CRP|5|mg/L||||F\rL|1|N\r")
    bundle, issues, _ = mapped(data, code_map)
    assert codes(issues) == ["ASTM-DEVICE-UNKNOWN"]
    bundle, issues, _ = mapped(data, code_map, device_id="AF2-1")
    assert issues == [] and resources(bundle, "Device")[0]["identifier"][0]["value"] == "AF2-1"


def test_ids_are_deterministic_and_differ_between_messages(code_map):
    a, _, _ = mapped(records("E5"), code_map)
    b, _, _ = mapped(records("E5"), code_map)
    c, _, _ = mapped(records("E5").replace(b"|53|", b"|54|"), code_map)
    urls = lambda x: [e["fullUrl"] for e in x["entry"]]  # noqa: E731
    assert urls(a) == urls(b)
    assert all(u.startswith("urn:uuid:") for u in urls(a))
    assert urls(a) != urls(c)
    assert len(set(urls(a))) == len(urls(a))


def test_several_patients_and_orders(code_map, corpus):
    data = (corpus / "astm" / "go-astm-euroimmun-analyzer1-sars-cov2-iga.astm").read_bytes()
    code_map = {"SARSCOV2IGA": {"nlk": "NPU99999", "display": "test"}}
    bundle, issues, _ = mapped(data, code_map)
    assert len(resources(bundle, "Patient")) == 20
    assert len(resources(bundle, "Observation")) == 20
    assert "ASTM-COLLECTION-TIME-MISSING" in codes(issues)


def test_host_query_message_maps_to_an_empty_bundle(code_map):
    bundle, issues, qc = mapped(records("E8"), code_map)
    assert "entry" not in bundle and issues == [] and qc == []


def test_parse_problems_become_warnings(code_map):
    data = records("E5").replace(b"L|1|N\r", b"")
    _, issues, _ = mapped(data, code_map)
    assert [(i.severity, i.code) for i in issues] == [("warning", "ASTM-NO-TERMINATOR")]


def test_every_corpus_message_maps_to_a_valid_bundle(corpus):
    from adapters.astm.e1394 import parse_messages
    for path in sorted((corpus / "astm").rglob("*.astm")):
        for msg in parse_messages(path.read_bytes()):
            bundle, issues, qc = astm_to_bundle(msg, code_map={})
            Bundle.model_validate(bundle)


def test_odd_whitespace_becomes_a_plain_space_so_the_bundle_stays_valid_fhir(code_map):
    data = records("E5").replace(b"|Danser^", "|Dan\u00a0ser^".encode("latin-1"))
    bundle, _, _ = mapped(data, code_map)          # mapped() validates the bundle
    (patient,) = resources(bundle, "Patient")
    assert patient["name"][0]["family"] == "Dan ser"
