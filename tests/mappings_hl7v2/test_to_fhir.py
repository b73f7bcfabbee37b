"""ORU^R01 → FHIR transaction Bundle: golden files, corpus validity, mapping rules, round trip."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import systems
from mappings.hl7v2.escape import escape
from mappings.hl7v2.from_fhir import bundle_to_oru_r01
from mappings.hl7v2.parser import parse
from mappings.hl7v2.separators import DEFAULT
from mappings.hl7v2.to_fhir import resource_uuid, to_bundle
from support import corpus_oru_r01_files, hl7v2_corpus_file, require_corpus

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
ORU_FILES = corpus_oru_r01_files()
BACK_TS = datetime.fromisoformat("2025-03-14T22:16:00+01:00")
MSH = ("MSH|^~\\&|POCDM|LEGEVAKT-XBY^4210001^L|LABGW|KOMMUNE-XBY^4210000^L|"
       "20250314093200+0100||ORU^R01^ORU_R01|CTRL-1|P|2.5.1|||AL|NE||UNICODE UTF-8")
PID = "PID|1||13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR||Danser^Line||19691113|F"
OBR = "OBR|1|ORD-1^EPJ|POC-1^POCDM|CRP^CRP^L|||20250314092500"


def _map(*segments: str) -> tuple[dict, list]:
    return to_bundle(parse(("\r".join(segments) + "\r").encode()))


def _resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _obs(*obx: str) -> dict:
    bundle, _ = _map(MSH, PID, OBR, *obx)
    return _resources(bundle, "Observation")[0]


# ------------------------------------------------------------------ golden files

@pytest.mark.parametrize("name", ["e9", "e10"])
def test_golden_bundle(name):
    msg = parse((GOLDEN / f"{name}.hl7").read_bytes())
    bundle, issues = to_bundle(msg)
    assert bundle == json.loads((GOLDEN / f"{name}.bundle.json").read_text())
    assert [(i.severity, i.code, i.location) for i in issues] == \
        [("information", "HL7-SEGMENT-NOT-MAPPED", "PV1[1]")]
    Bundle.model_validate(bundle)


@pytest.mark.parametrize("name", ["e9", "e10"])
def test_golden_back_to_v2(name):
    msg = parse((GOLDEN / f"{name}.hl7").read_bytes())
    bundle, _ = to_bundle(msg)
    back = bundle_to_oru_r01(bundle, control_id=msg.control_id, timestamp=BACK_TS,
                             sending_facility="KOMMUNE-XBY^4210000^L", receiving_app="EPJ")
    assert back == (GOLDEN / f"{name}.back.hl7").read_bytes()
    assert to_bundle(parse(back))[0] == bundle


def test_e9_facts():
    bundle, _ = to_bundle(parse((GOLDEN / "e9.hl7").read_bytes()))
    patient = _resources(bundle, "Patient")[0]
    assert patient["identifier"] == [{"system": systems.FNR, "value": "13116900216"}]
    crp, hb = _resources(bundle, "Observation")
    assert crp["code"]["coding"][0]["system"] == systems.NLK
    assert crp["code"]["coding"][1] == {"system": systems.LOINC, "code": "1988-5",
                                        "display": "C reactive protein [Mass/volume] in Serum or Plasma"}
    assert crp["valueQuantity"] == {"value": 27, "unit": "mg/L", "system": systems.UCUM,
                                    "code": "mg/L"}
    assert crp["referenceRange"] == [{"text": "<5"}]
    assert crp["effectiveDateTime"] == "2025-03-14T09:25:00+01:00"
    assert crp["issued"] == "2025-03-14T09:30:55+01:00"
    assert crp["device"] == {"identifier": {"system": "urn:labgate:device:ACME-CRP",
                                            "value": "AF2-000987"}}
    assert hb["referenceRange"][0]["low"]["value"] == 11.7
    assert hb["interpretation"][0]["coding"][0] == {"system": systems.V3_INTERPRETATION,
                                                    "code": "L"}
    requester = _resources(bundle, "Practitioner")[0]
    assert requester["identifier"] == [{"system": systems.HPR, "value": "9144889"}]
    specimen = _resources(bundle, "Specimen")[0]
    assert specimen["type"]["coding"][0]["system"] == systems.V2_0487
    assert crp["specimen"]["reference"] == bundle["entry"][4]["fullUrl"]
    report = _resources(bundle, "DiagnosticReport")[0]
    assert report["status"] == "final"
    assert len(report["result"]) == 2
    assert bundle["entry"][0]["fullUrl"] == resource_uuid("POC20250314-000123", "Patient", 0)


def test_e10_dnr_and_orc_fallbacks():
    bundle, _ = to_bundle(parse((GOLDEN / "e10.hl7").read_bytes()))
    assert _resources(bundle, "Patient")[0]["identifier"][0]["system"] == systems.DNR
    sr = _resources(bundle, "ServiceRequest")[0]
    assert sr["identifier"][0]["value"] == "POC-000457"
    assert sr["requester"]["reference"] == bundle["entry"][1]["fullUrl"]
    assert _resources(bundle, "Practitioner")[0]["identifier"][0] == \
        {"system": systems.HPR, "value": "1234567"}
    assert _resources(bundle, "Specimen")[0]["collection"] == \
        {"collectedDateTime": "2025-03-14T22:09:00+01:00"}


# ------------------------------------------------------------------ corpus

@pytest.mark.parametrize("path", ORU_FILES, ids=lambda p: p.name)
def test_corpus_oru_bundles_validate(path):
    bundle, issues = to_bundle(parse(path.read_bytes()))
    Bundle.model_validate(bundle)
    orjson.dumps(bundle)
    assert all(i.code.startswith("HL7-") for i in issues)


@pytest.mark.parametrize("path", ORU_FILES, ids=lambda p: p.name)
def test_corpus_oru_round_trip(path):
    msg = parse(path.read_bytes())
    first, issues = to_bundle(msg)
    # A patient-level OBX goes back after the PID only in v2.7+ (PATIENT_OBSERVATION);
    # in v2.5.1 it gets an order group (test_patient_level_obx_is_a_patient_observation).
    version = "2.8" if "HL7-OBX-PATIENT-LEVEL" in [i.code for i in issues] else "2.5.1"
    back = bundle_to_oru_r01(first, control_id=msg.control_id, timestamp=BACK_TS,
                             version=version)
    assert to_bundle(parse(back))[0] == first


def test_corpus_is_mapped_deterministically():
    require_corpus()
    raw = ORU_FILES[0].read_bytes()
    assert to_bundle(parse(raw)) == to_bundle(parse(raw))


# ------------------------------------------------------------------ rules

def test_unsupported_message_type():
    bundle, issues = to_bundle(parse(hl7v2_corpus_file("valid", "oie-ack-aa-v22.hl7")))
    assert [(i.severity, i.code) for i in issues] == [("error", "HL7-UNSUPPORTED-MESSAGE-TYPE")]
    assert bundle == {"resourceType": "Bundle", "type": "transaction"}


def test_oru_r30_is_supported():
    bundle, issues = _map(MSH.replace("ORU^R01^ORU_R01", "ORU^R30^ORU_R30"), PID, OBR,
                          "OBX|1|NM|X^X^L||1|||||||F")
    assert not [i for i in issues if i.rejects]
    assert len(_resources(bundle, "Observation")) == 1


@pytest.mark.parametrize("segments, code", [
    ((MSH, OBR, "OBX|1|NM|X^X^L||1"), "HL7-PID-MISSING"),
    ((MSH, PID), "HL7-OBR-MISSING"),
    ((MSH, PID, "ORC|NW|ORD-1", "OBX|1|NM|X^X^L||1", OBR), "HL7-OBX-BEFORE-OBR"),
    ((MSH, PID, PID, OBR), "HL7-PID-REPEATED"),
])
def test_structural_errors(segments, code):
    _, issues = _map(*segments)
    assert code in [i.code for i in issues if i.severity == "error"]


def test_unknown_and_z_segments_are_reported_not_dropped():
    _, issues = _map(MSH, "SFT|x", PID, "NTE|1||patient note", "ZXY|1|secret", OBR,
                     "OBX|1|NM|X^X^L||1", "ZXY|2", "FT1|1")
    info = [(i.code, i.location) for i in issues if i.severity == "information"]
    assert info == [("HL7-SEGMENT-NOT-MAPPED", "SFT[1]"), ("HL7-SEGMENT-NOT-MAPPED", "NTE[1]"),
                    ("HL7-SEGMENT-NOT-MAPPED", "ZXY[1]"), ("HL7-SEGMENT-NOT-MAPPED", "ZXY[2]"),
                    ("HL7-SEGMENT-NOT-MAPPED", "FT1[1]")]


def test_notes_go_to_the_resource_they_follow():
    bundle, _ = _map(MSH, PID, OBR, "NTE|1||order note", "OBX|1|NM|X^X^L||1",
                     "NTE|1||first\\.br\\line~second", "SPM|1|S1", "NTE|1||specimen note")
    assert _resources(bundle, "ServiceRequest")[0]["note"] == [{"text": "order note"}]
    assert _resources(bundle, "Observation")[0]["note"] == [{"text": "first\nline\nsecond"}]
    assert _resources(bundle, "Specimen")[0]["note"] == [{"text": "specimen note"}]


@pytest.mark.parametrize("obx5, expected", [
    ("27", {"value": 27}),
    ("11.20", {"value": 11.2}),
    ("<5", {"value": 5, "comparator": "<"}),
    ("> 200", {"value": 200, "comparator": ">"}),
    (">=0.5", {"value": 0.5, "comparator": ">="}),
])
def test_nm_values(obx5, expected):
    ob = _obs(f"OBX|1|NM|X^X^L||{obx5}|mg/L|||||F")
    assert ob["valueQuantity"] == {**expected, "unit": "mg/L", "system": systems.UCUM,
                                   "code": "mg/L"}


def test_nm_that_is_not_a_number_is_text_with_a_warning():
    bundle, issues = _map(MSH, PID, OBR, "OBX|1|NM|X^X^L||positive")
    assert _resources(bundle, "Observation")[0]["valueString"] == "positive"
    assert "HL7-OBX-NM-NOT-NUMERIC" in [i.code for i in issues]


@pytest.mark.parametrize("obx5, key, expected", [
    ("<^5", "valueQuantity", {"value": 5, "comparator": "<"}),
    ("=^5", "valueQuantity", {"value": 5}),
    ("^1^-^5", "valueRange", {"low": {"value": 1}, "high": {"value": 5}}),
    ("^1^:^128", "valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 128}}),
    ("^2^+", "valueString", "^2^+"),
])
def test_sn_values(obx5, key, expected):
    assert _obs(f"OBX|1|SN|X^X^L||{obx5}")[key] == expected


def test_text_coded_and_date_values():
    assert _obs("OBX|1|ST|X^X^L||a \\F\\ b")["valueString"] == "a | b"
    assert _obs("OBX|1|TX|X^X^L||line 1~line 2")["valueString"] == "line 1\nline 2"
    assert _obs("OBX|1|FT|X^X^L||a\\.br\\b")["valueString"] == "a\nb"
    assert _obs("OBX|1|CWE|X^X^L||260373001^Detected^SCT")["valueCodeableConcept"] == \
        {"coding": [{"system": "http://snomed.info/sct", "code": "260373001",
                     "display": "Detected"}]}
    assert _obs("OBX|1|DT|X^X^L||20250314")["valueDateTime"] == "2025-03-14"
    assert _obs("OBX|1|TS|X^X^L||202503140925")["valueDateTime"] == "2025-03-14T09:25:00+01:00"
    assert _obs("OBX|1|TM|X^X^L||0925")["valueTime"] == "09:25:00"


def test_statuses_and_reference_ranges():
    for v2, fhir in (("F", "final"), ("P", "preliminary"), ("C", "corrected"),
                     ("X", "cancelled"), ("", "unknown")):
        assert _obs(f"OBX|1|NM|X^X^L||1||||||{v2}")["status"] == fhir
    assert _obs("OBX|1|NM|X^X^L||1|g/L|-2.5-3")["referenceRange"][0]["low"]["value"] == -2.5
    assert _obs("OBX|1|NM|X^X^L||1|g/L|neg")["referenceRange"] == [{"text": "neg"}]


def test_nlk_oid_and_alias_spellings_normalise():
    for name in ("NLK", "2.16.578.1.12.4.1.1.7280"):
        ob = _obs(f"OBX|1|NM|NPU19748^CRP^{name}||1")
        assert ob["code"]["coding"][0]["system"] == systems.NLK


@pytest.mark.parametrize("cx, system", [
    ("13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR", systems.FNR),
    ("41019044120^^^^NNNOR", systems.DNR),
    ("41019044120^^^^DNR", systems.DNR),
    ("81019044120^^^&2.16.578.1.12.4.1.4.3&ISO", systems.FHNR),
    ("13116900216^^^^FNR", systems.FNR),
    ("12528510033^^^LEGEKONTOR-X^HNR", systems.HNR),
    ("555-44-4444^^^GHH&1.2.3&ISO^MR", "urn:oid:1.2.3"),
    ("555^^^GHH LAB^MR", "urn:labgate:patient:GHH%20LAB"),
])
def test_patient_identifiers(cx, system):
    bundle, _ = _map(MSH, f"PID|1||{cx}||N^G||19691113|F", OBR)
    ident = _resources(bundle, "Patient")[0]["identifier"][0]
    assert ident["system"] == system
    if system == systems.HNR:
        assert ident["assigner"] == {"display": "LEGEKONTOR-X"}
        assert ident["type"]["coding"][0]["code"] == "HNR"


def test_practitioners_are_shared_and_hpr_recognised_by_id_type():
    bundle, _ = _map(MSH, PID, OBR + "|||OP1^Op^Era||||||1234567^Lege^A^^^^^^^^^^HPR",
                     "OBX|1|NM|X^X^L||1|||||||||||OP1^Op^Era", "OBX|2|NM|Y^Y^L||2|||||||||||OP1^Op^Era")
    people = _resources(bundle, "Practitioner")
    assert [p["identifier"][0]["system"] for p in people] == \
        [systems.HPR, "urn:labgate:practitioner:unknown"]
    refs = {o["performer"][0]["reference"] for o in _resources(bundle, "Observation")}
    assert len(refs) == 1


def test_invalid_timestamps_are_warnings_not_crashes():
    bundle, issues = _map(MSH, "PID|1||1^^^^MR||N^G||196203520", OBR.replace("20250314092500",
                                                                              "DATE!"))
    assert _resources(bundle, "Patient")[0].get("birthDate") is None
    assert sorted(i.location for i in issues if i.code == "HL7-TS-INVALID") == \
        ["OBR[1]-7", "PID-7"]
    Bundle.model_validate(bundle)


def test_timestamps_without_offset_use_the_default_zone():
    summer = _obs("OBX|1|NM|X^X^L||1|||||||||20250701120000")
    assert summer["effectiveDateTime"] == "2025-07-01T12:00:00+02:00"
    bundle, _ = to_bundle(parse(("\r".join([MSH, PID, OBR, "OBX|1|NM|X^X^L||1"]) + "\r").encode()),
                          default_tz="UTC")
    assert _resources(bundle, "Observation")[0]["effectiveDateTime"] == "2025-03-14T09:25:00+00:00"


# ------------------------------------------------------------------ round trip property

SAFE = st.text(alphabet=st.sampled_from(list("abcXYZ019 .,-/:()æøåÆØÅ|^~\\&<>")), min_size=1,
               max_size=10).filter(lambda s: s == s.strip() and s)
CODE = st.text(alphabet=st.sampled_from(list("ABCNPU0123456789-")), min_size=1, max_size=8)
TS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.strftime("%Y%m%d%H%M%S"))
NUMBER = st.one_of(st.integers(-10_000, 10_000).map(str),
                   st.decimals(min_value=-1000, max_value=1000, places=2,
                               allow_nan=False, allow_infinity=False).map(str))


def _e(s: str) -> str:
    return escape(s, DEFAULT)


@st.composite
def obx_segments(draw, k: int) -> str:
    code = f"{draw(CODE)}^{_e(draw(SAFE))}^{draw(st.sampled_from(['NLK', 'L', 'LN', '99X']))}"
    kind = draw(st.sampled_from(["NM", "NMC", "SNR", "SNT", "ST", "TX", "CWE", "TS"]))
    value = {
        "NM": lambda: ("NM", draw(NUMBER)),
        "NMC": lambda: ("NM", draw(st.sampled_from(["<", ">", "<=", ">="])) + draw(NUMBER)),
        "SNR": lambda: ("SN", f"^{draw(NUMBER)}^-^{draw(NUMBER)}"),
        "SNT": lambda: ("SN", f"^{draw(NUMBER)}^:^{draw(NUMBER)}"),
        "ST": lambda: ("ST", _e(draw(SAFE))),
        "TX": lambda: ("TX", "~".join(_e(draw(SAFE)) for _ in range(draw(st.integers(1, 3))))),
        "CWE": lambda: ("CWE", f"{draw(CODE)}^{_e(draw(SAFE))}^SCT"),
        "TS": lambda: ("TS", draw(TS)),
    }[kind]()
    unit = draw(st.sampled_from(["", "mg/L^mg/L^UCUM", "g/dL", "10*9/L^10E9/L^UCUM"]))
    rng = draw(st.sampled_from(["", "1-5", "<5", "0.5-2.2", "neg"]))
    flag = draw(st.sampled_from(["", "H", "L~A", "HH"]))
    status = draw(st.sampled_from(["F", "P", "C", "X", ""]))
    performer = draw(st.sampled_from(["", "OP1^Op^Era", "1234567^Lege^A^^^^^^HPR&2.16.578.1.12.4.1.4.4&ISO"]))
    device = draw(st.sampled_from(["", "SN1^ACME", "SN2^^1.2.3^ISO"]))
    return (f"OBX|{k}|{value[0]}|{code}||{value[1]}|{unit}|{rng}|{flag}|||{status}|||"
            f"{draw(st.sampled_from(['', draw(TS)]))}||{performer}||{device}|{draw(TS)}")


@st.composite
def oru_messages(draw) -> bytes:
    cx = draw(st.sampled_from([
        "13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR", "41019044120^^^^NNNOR",
        "12528510033^^^LEGEKONTOR^HNR", "X1^^^GHH&1.2.3&ISO^MR", "X2^^^LOCAL^PI"]))
    name = f"{_e(draw(SAFE))}^{_e(draw(SAFE))}"
    segs = [MSH.replace("CTRL-1", draw(CODE)),
            f"PID|1||{cx}||{name}||{draw(st.sampled_from(['', '1969', '196911', '19691113']))}|"
            f"{draw(st.sampled_from(['', 'M', 'F', 'U']))}"]
    for g in range(1, draw(st.integers(1, 2)) + 1):
        segs.append(f"ORC|RE|P{g}^EPJ|F{g}^LAB||{draw(st.sampled_from(['', 'CM', 'IP']))}")
        segs.append(f"OBR|{g}|P{g}^EPJ|F{g}^LAB|{draw(CODE)}^{_e(draw(SAFE))}^L|||{draw(TS)}|||"
                    f"{draw(st.sampled_from(['', 'C1^Coll^Ector']))}||||||"
                    f"{draw(st.sampled_from(['', '9144889^Koman^Magnar^^^^^^HPR']))}||||||"
                    f"{draw(TS)}|||{draw(st.sampled_from(['F', 'P', 'C', '']))}")
        if draw(st.booleans()):
            segs.append(f"NTE|1||{_e(draw(SAFE))}")
        for k in range(1, draw(st.integers(1, 3)) + 1):
            segs.append(draw(obx_segments(k)))
            if draw(st.booleans()):
                segs.append(f"NTE|1||{_e(draw(SAFE))}")
        for s in range(1, draw(st.integers(0, 2)) + 1):
            segs.append(f"SPM|{s}|S{g}{s}&LAB||BLDC^Blood capillary^HL70487|||||||||||||"
                        f"{draw(TS)}|{draw(TS)}")
            if s > 1 and draw(st.booleans()):
                segs.append(draw(obx_segments(9)))
    return ("\r".join(segs) + "\r").encode()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(oru_messages())
def test_round_trip_oru_fhir_oru_fhir(raw):
    msg = parse(raw)
    first, issues = to_bundle(msg)
    assert not [i for i in issues if i.rejects]
    back = bundle_to_oru_r01(first, control_id=msg.control_id,
                             timestamp=datetime(2025, 3, 14, tzinfo=timezone.utc))
    assert to_bundle(parse(back))[0] == first


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(oru_messages())
def test_generated_bundles_validate(raw):
    Bundle.model_validate(to_bundle(parse(raw))[0])


# ------------------------------------------------------------------ hostile field content

JUNK = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(
    list("|^~\\&0123456789.-<>:+ ")), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pid=st.lists(JUNK, max_size=9), obr=st.lists(JUNK, max_size=26),
       obx=st.lists(JUNK, max_size=19), spm=st.lists(JUNK, max_size=18),
       obx_type=st.sampled_from(["NM", "SN", "ST", "TX", "CWE", "TS", "DT", "TM", "ED", ""]))
def test_mapping_never_raises_on_hostile_field_content(pid, obr, obx, spm, obx_type):
    obx = ["1", obx_type] + obx[2:]
    raw = "\r".join([MSH, "PID|" + "|".join(pid), "OBR|" + "|".join(obr), "OBX|" + "|".join(obx),
                     "NTE|1||" + "|".join(pid), "SPM|" + "|".join(spm)]) + "\r"
    bundle, issues = to_bundle(parse(raw.encode()))
    orjson.dumps(bundle)
    Bundle.model_validate(bundle)
    assert all(i.severity in ("error", "warning", "information") for i in issues)
    back = bundle_to_oru_r01(bundle, control_id="C", timestamp=BACK_TS)
    parse(back)


def test_huge_numbers_are_text():
    ob = _obs("OBX|1|NM|X^X^L||" + "9" * 5000)
    assert ob["valueString"] == "9" * 5000


def test_repeated_obx5_of_a_non_text_type_is_reported():
    raw = (b"MSH|^~\\&|A|B|C|D|20250314093200||ORU^R01^ORU_R01|REP-1|P|2.5.1\r"
           b"PID|1||13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR\r"
           b"OBR|1|||X^x^L|||20250314092500\r"
           b"OBX|1|CWE|Y^y^L||A^a^L~B^b^L||||||F\r")
    bundle, issues = to_bundle(parse(raw))
    assert [(i.code, i.location) for i in issues if i.code == "HL7-OBX-5-REPEATED"] == \
        [("HL7-OBX-5-REPEATED", "OBX[1]-5")]


@pytest.mark.parametrize("number, system", [
    ("13116900216", systems.FNR), ("41019044120", systems.DNR), ("12528510033", systems.HNR),
])
def test_nnnor_numbers_are_classified_by_their_offsets(number, system):
    from mappings.hl7v2.datatypes import cx_identifier
    ident = cx_identifier(number, ["LEGEKONTOR"], "NNNOR")
    assert ident["system"] == system and ident["value"] == number
    if system == systems.HNR:                     # a local number: no-basis wants type and assigner
        assert ident["type"]["coding"][0]["code"] == "HNR"
        assert ident["assigner"] == {"display": "LEGEKONTOR"}


@pytest.mark.parametrize("family, expected", [
    ("\xa0", " "),                      # found by the hostile-content property test
    ("Kari\u2003Hansen", "Kari Hansen"),
    ("Kari\\XC2A0\\Hansen", "Kari Hansen"),   # a no-break space through a hex escape
])
def test_odd_whitespace_becomes_plain_spaces_so_the_bundle_stays_valid_fhir(family, expected):
    raw = ("MSH|^~\\&|A|B|C|D|20250314093200||ORU^R01^ORU_R01|NB-1|P|2.5.1|||||UNICODE UTF-8\r"
           f"PID|1||13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR||{family}^Line\r"
           "OBR|1|||X^x^L|||20250314092500\r"
           "OBX|1|ST|Y^y^L||a\u00a0b||||||F\r").encode()
    bundle, _ = to_bundle(parse(raw))
    Bundle.model_validate(bundle)
    [patient] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["name"][0]["family"] == expected
    [obs] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert obs["valueString"] == "a b"
