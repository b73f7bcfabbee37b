"""OML^O21, ORM^O01 and OUL^R22 both ways: golden files, group shapes, round trips.

Golden files per type (``golden/<name>.hl7`` → ``<name>.bundle.json`` →
``<name>.back.hl7``): orders go back as OML^O21, results as ORU^R01. The
outbound writer is lean; its output is held to hl7apy's parse here.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mappings_hl7v2.test_to_fhir import CODE, SAFE, TS, _e, obx_segments

from mappings.hl7v2.from_fhir import bundle_to_oml_o21, bundle_to_oru_r01
from mappings.hl7v2.parser import parse
from mappings.hl7v2.to_fhir import ANALYSIS_TIME_EXT, to_bundle

GOLDEN = Path(__file__).resolve().parent / "golden"

BACK_TS = datetime.fromisoformat("2025-03-14T22:16:00+01:00")
WRITERS = {"oml_o21": bundle_to_oml_o21, "orm_o01": bundle_to_oml_o21,
           "oul_r22": bundle_to_oru_r01}
NOT_MAPPED = {
    "oml_o21": ["PV1[1]", "NTE[1]", "TQ1[1]", "ZXY[1]"],
    "orm_o01": ["PV1[1]"],
    "oul_r22": [],
}


def _map(*segments: str) -> tuple[dict, list]:
    return to_bundle(parse(("\r".join(segments) + "\r").encode()))


def _res(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _by_url(bundle: dict) -> dict:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


# ------------------------------------------------------------------ golden files

@pytest.mark.parametrize("name", sorted(WRITERS))
def test_golden_bundle(name):
    bundle, issues = to_bundle(parse((GOLDEN / f"{name}.hl7").read_bytes()))
    assert bundle == json.loads((GOLDEN / f"{name}.bundle.json").read_text(encoding="utf-8"))
    assert [i.location for i in issues if i.code == "HL7-SEGMENT-NOT-MAPPED"] == NOT_MAPPED[name]
    assert not [i for i in issues if i.rejects]
    Bundle.model_validate(bundle)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_golden_back_to_v2(name, hl7apy_reference):
    msg = parse((GOLDEN / f"{name}.hl7").read_bytes())
    bundle, _ = to_bundle(msg)
    back = WRITERS[name](bundle, control_id=msg.control_id, timestamp=BACK_TS,
                         sending_facility="KOMMUNE-XBY^4210000^L", receiving_app="LAB")
    assert back == (GOLDEN / f"{name}.back.hl7").read_bytes()
    lean = parse(back)
    assert hl7apy_reference.disagreements(hl7apy_reference.parse(back.decode()), lean) == []


@pytest.mark.parametrize("name", ["oml_o21", "orm_o01"])
def test_golden_orders_round_trip_exactly(name):
    bundle, _ = to_bundle(parse((GOLDEN / f"{name}.hl7").read_bytes()))
    back = bundle_to_oml_o21(bundle, control_id=parse((GOLDEN / f"{name}.hl7").read_bytes())
                             .control_id, timestamp=BACK_TS)
    assert to_bundle(parse(back))[0] == bundle


# ------------------------------------------------------------------ orders

def test_oml_orders_have_specimens_requester_and_supporting_observations():
    bundle, _ = to_bundle(parse((GOLDEN / "oml_o21.hl7").read_bytes()))
    urls = _by_url(bundle)
    first, second = _res(bundle, "ServiceRequest")
    assert first["status"] == "active" and first["intent"] == "order"
    assert first["authoredOn"] == "2025-03-14T08:10:00+01:00"
    assert urls[first["requester"]["reference"]]["name"][0]["given"] == ["Øystein"]
    assert first["note"] == [{"text": "Spørsmål: infeksjon\nkontroll om 2 døgn"}]
    spec = urls[first["specimen"][0]["reference"]]
    assert spec["type"]["coding"][0]["code"] == "SER"
    assert spec["note"] == [{"text": "Hemolytisk & lipemisk?"}]
    height = urls[first["supportingInfo"][0]["reference"]]
    assert height["valueQuantity"]["value"] == 172
    assert urls[second["specimen"][0]["reference"]]["type"]["coding"][0]["code"] == "WB"
    assert not _res(bundle, "DiagnosticReport")
    patient = _res(bundle, "Patient")[0]
    assert [i["value"] for i in patient["identifier"]] == ["13116900216", "PAS-77"]


def test_orm_o01_v23_is_an_order():
    bundle, issues = to_bundle(parse((GOLDEN / "orm_o01.hl7").read_bytes()))
    assert not [i for i in issues if i.rejects]
    assert [sr["status"] for sr in _res(bundle, "ServiceRequest")] == ["active", "revoked"]


def test_order_without_orc_status_is_new():
    bundle, _ = _map("MSH|^~\\&|A|B|C|D|20250314||OML^O21^OML_O21|X|P|2.5.1", "PID|1||1^^^L^MR",
                     "OBR|1|P1||CRP^CRP^L")
    assert _res(bundle, "ServiceRequest")[0]["status"] == "active"


# ------------------------------------------------------------------ OUL^R22 shapes

def test_oul_specimen_first_is_shared_by_its_orders_and_keeps_its_own_obx():
    bundle, issues = to_bundle(parse((GOLDEN / "oul_r22.hl7").read_bytes()))
    urls = _by_url(bundle)
    s1, s2 = _res(bundle, "Specimen")
    assert len(s1["request"]) == 2 and len(s2["request"]) == 1
    assert s1["receivedTime"] == "2025-03-14T09:00:00+01:00"
    quality = [o for o in _res(bundle, "Observation") if "basedOn" not in o]
    assert [o["valueString"] for o in quality] == ["Lett hemolyse"]
    assert urls[quality[0]["specimen"]["reference"]] is s1
    crp_sr = _res(bundle, "ServiceRequest")[0]
    assert crp_sr["status"] == "completed" and crp_sr["note"] == [{"text": "Bestilling kommentar"}]
    albumin = urls[_res(bundle, "DiagnosticReport")[2]["result"][0]["reference"]]
    assert albumin["valueQuantity"] == {"value": 300, "comparator": ">", "unit": "mg/L",
                                        "system": "http://unitsofmeasure.org", "code": "mg/L"}
    assert urls[albumin["specimen"]["reference"]] is s2


def test_oul_spm_after_obx_like_the_field_sends_it():
    bundle, issues = _map("MSH|^~\\&|A|B|C|D|20250314||OUL^R22^OUL_R22|X|P|2.5.1",
                          "PID|1||1^^^L^MR", "ORC|SC|P1", "OBR|1|P1||CRP^CRP^L", "OBX|1|NM|CRP^CRP^L||4",
                          "SPM|1|S1||SER", "SPM|2|S2||WB")
    assert not [i for i in issues if i.rejects]
    assert len(_res(bundle, "Specimen")) == 2
    assert _res(bundle, "Observation")[0]["specimen"] == _res(bundle, "DiagnosticReport")[0][
        "specimen"][0]


# ------------------------------------------------------------------ patient-level OBX, OBX-19

@pytest.mark.parametrize("version, severity", [("2.8", "information"), ("2.5.1", "warning")])
def test_patient_level_obx_is_a_patient_observation(version, severity):
    bundle, issues = _map(f"MSH|^~\\&|A|B|C|D|20250314||ORU^R01^ORU_R01|X|P|{version}",
                          "PID|1||1^^^L^MR", "OBX|1|NM|AGE^Alder^L||54|a^år^UCUM|||||F",
                          "OBR|1|P1||CRP^CRP^L", "OBX|1|NM|CRP^CRP^L||4|||||F")
    assert [(i.severity, i.code) for i in issues] == [(severity, "HL7-OBX-PATIENT-LEVEL")]
    age = _res(bundle, "Observation")[0]
    assert "basedOn" not in age and age["subject"] and age["valueQuantity"]["value"] == 54
    assert not any(age is o for dr in _res(bundle, "DiagnosticReport") for o in dr["result"])
    # Written back after the PID only in v2.7+, which has the PATIENT_OBSERVATION group.
    back = bundle_to_oru_r01(bundle, control_id="X", timestamp=BACK_TS, version="2.8")
    assert [s.name for s in parse(back).segments] == ["MSH", "PID", "OBX", "ORC", "OBR", "OBX"]
    assert to_bundle(parse(back))[0] == bundle
    # v2.5.1 has no such group: the observation gets an order group of its own.
    back = parse(bundle_to_oru_r01(bundle, control_id="X", timestamp=BACK_TS))
    assert [s.name for s in back.segments] == ["MSH", "PID", "ORC", "OBR", "OBX",
                                               "ORC", "OBR", "OBX"]
    assert back.segments_named("OBR")[1].value(4) == "AGE"
    assert back.segments_named("OBX")[1].value(5) == "54"


def test_obx_after_a_lone_orc_is_still_an_error():
    _, issues = _map("MSH|^~\\&|A|B|C|D|20250314||ORU^R01^ORU_R01|X|P|2.8",
                     "PID|1||1^^^L^MR", "ORC|RE|P1", "OBX|1|NM|CRP^CRP^L||4", "OBR|1|P1||CRP")
    assert "HL7-OBX-BEFORE-OBR" in [i.code for i in issues if i.rejects]


def test_obx19_sets_the_analysis_time_extension_and_issued():
    bundle, _ = _map("MSH|^~\\&|A|B|C|D|20250314||ORU^R01^ORU_R01|X|P|2.5.1", "PID|1||1^^^L^MR",
                     "OBR|1|P1||CRP^CRP^L", "OBX|1|NM|CRP^CRP^L||4|||||F|||||||||202503141015+0100",
                     "OBX|2|NM|HB^Hb^L||4|||||F")
    with_time, without = _res(bundle, "Observation")
    assert with_time["extension"] == [{"url": ANALYSIS_TIME_EXT,
                                       "valueDateTime": "2025-03-14T10:15:00+01:00"}]
    assert with_time["issued"] == "2025-03-14T10:15:00+01:00"
    assert "extension" not in without
    back = bundle_to_oru_r01(bundle, control_id="X", timestamp=BACK_TS)
    assert parse(back).segments_named("OBX")[0].value(19) == "20250314101500+0100"
    assert to_bundle(parse(back))[0] == bundle


# ------------------------------------------------------------------ generated orders

@st.composite
def oml_messages(draw) -> bytes:
    """OML^O21 with several PID-3, orders, NTE at every level, OBX and SPM; free text
    with æøå and every delimiter (escaped)."""
    version = draw(st.sampled_from(["2.3", "2.4", "2.5", "2.5.1", "2.6"]))
    mtype = draw(st.sampled_from(["OML^O21^OML_O21", "ORM^O01^ORM_O01"]))
    ids = draw(st.lists(st.sampled_from([
        "13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR", "41019044120^^^^NNNOR",
        "X1^^^GHH&1.2.3&ISO^MR", "X2^^^LOCAL^PI"]), min_size=1, max_size=3, unique=True))
    segs = [f"MSH|^~\\&|EPJ|LEGE|LABGW|KOMMUNE|20250314093200+0100||{mtype}|"
            f"{draw(CODE)}|P|{version}|||AL|NE||UNICODE UTF-8",
            f"PID|1||{'~'.join(ids)}||{_e(draw(SAFE))}^{_e(draw(SAFE))}||19691113|"
            f"{draw(st.sampled_from(['', 'M', 'F']))}"]
    for g in range(1, draw(st.integers(1, 3)) + 1):
        control, status = draw(st.sampled_from([("NW", ""), ("NW", "IP"), ("CA", "CA"),
                                                ("HD", "HD"), ("SC", "CM")]))
        requester = draw(st.sampled_from(["", "9144889^Koman^Magnar^^^^^^HPR"]))
        segs.append(f"ORC|{control}|P{g}^EPJ|{draw(st.sampled_from(['', f'F{g}^LAB']))}||"
                    f"{status}||||{draw(TS)}|||{requester}")
        segs.append(f"OBR|{g}|P{g}^EPJ||{draw(CODE)}^{_e(draw(SAFE))}^L|||{draw(TS)}|||"
                    f"{draw(st.sampled_from(['', 'C1^Coll^Ector']))}||||||{requester}")
        if draw(st.booleans()):
            segs.append(f"NTE|1||{_e(draw(SAFE))}")
        for k in range(1, draw(st.integers(0, 2)) + 1):
            segs.append(draw(obx_segments(k)))
            if draw(st.booleans()):
                segs.append(f"NTE|1||{_e(draw(SAFE))}")
        for s in range(1, draw(st.integers(0, 2)) + 1):
            segs.append(f"SPM|{s}|S{g}{s}&EPJ||{draw(CODE)}^{_e(draw(SAFE))}^HL70487|||||||||||||"
                        f"{draw(TS)}")
            if draw(st.booleans()):
                segs.append(f"NTE|1||{_e(draw(SAFE))}")
    return ("\r".join(segs) + "\r").encode()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(oml_messages(), st.sampled_from(["UNICODE UTF-8", "8859/1", "ASCII"]))
def test_round_trip_oml_fhir_oml_fhir(raw, charset):
    msg = parse(raw)
    first, issues = to_bundle(msg)
    assert not [i for i in issues if i.rejects]
    back = bundle_to_oml_o21(first, control_id=msg.control_id,
                             timestamp=datetime(2025, 3, 14, tzinfo=timezone.utc), charset=charset)
    assert to_bundle(parse(back))[0] == first


# ------------------------------------------------------------------ character sets

@pytest.mark.parametrize("charset, encoded", [
    ("UNICODE UTF-8", "Øystein".encode()),
    ("8859/1", "Øystein".encode("latin-1")),
    ("ASCII", b"\\XC398\\ystein"),
])
def test_outbound_charsets_keep_norwegian_letters(charset, encoded):
    bundle, _ = to_bundle(parse((GOLDEN / "oml_o21.hl7").read_bytes()))
    back = bundle_to_oml_o21(bundle, control_id="OML-0001", timestamp=BACK_TS, charset=charset)
    assert encoded in back
    msg = parse(back)
    assert msg.get("MSH", 18) == charset
    assert to_bundle(msg)[0] == bundle


def test_characters_outside_8859_1_become_hex_escapes_not_question_marks():
    bundle, _ = _map("MSH|^~\\&|A|B|C|D|20250314||OML^O21^OML_O21|X|P|2.5.1|||||UNICODE UTF-8",
                     "PID|1||1^^^L^MR||Sámi Ŋ€||", "ORC|NW|P1", "OBR|1|P1||CRP^CRP^L",
                     "NTE|1||50 € \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ first\\.br\\second")
    back = bundle_to_oml_o21(bundle, control_id="X", timestamp=BACK_TS, charset="8859/1")
    assert b"?" not in back and b"\\XE282AC\\" in back and "á".encode("latin-1") in back
    again, _ = to_bundle(parse(back))
    assert again == bundle
    sr = _res(again, "ServiceRequest")[0]
    assert sr["note"] == [{"text": "50 € | ^ & ~ \\ first\nsecond"}]


def test_unknown_outbound_charset_is_refused():
    bundle, _ = to_bundle(parse((GOLDEN / "oml_o21.hl7").read_bytes()))
    with pytest.raises(ValueError, match="charset"):
        bundle_to_oml_o21(bundle, control_id="C", timestamp=BACK_TS, charset="EBCDIC")


@st.composite
def oul_messages(draw) -> bytes:
    """OUL^R22 (v2.5+): SPECIMEN groups (SPM, OBX*) each heading ORDER groups
    (OBR, ORC?, NTE*, OBX*), or the field's shape with SPM after the OBX."""
    segs = ["MSH|^~\\&|LIS|LAB|LABGW|KOMMUNE|20250314120000+0100||OUL^R22^OUL_R22|"
            f"{draw(CODE)}|P|{draw(st.sampled_from(['2.5', '2.5.1', '2.6']))}|||AL|NE||8859/1",
            "PID|1||13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR~X1^^^GHH&1.2.3&ISO^MR||"
            f"{_e(draw(SAFE))}^{_e(draw(SAFE))}||19691113|F"]
    specimen_first = draw(st.booleans())
    order = 0
    for s in range(1, draw(st.integers(1, 2)) + 1):
        spm = f"SPM|{s}|S{s}&LAB||{draw(CODE)}^{_e(draw(SAFE))}^HL70487|||||||||||||{draw(TS)}"
        if specimen_first:
            segs.append(spm)
        for _ in range(draw(st.integers(1, 2))):
            order += 1
            segs.append(f"OBR|{order}|P{order}^EPJ|F{order}^LAB|{draw(CODE)}^{_e(draw(SAFE))}^L|||"
                        f"{draw(TS)}|||||||||||||||{draw(TS)}|||{draw(st.sampled_from(['F', 'P']))}")
            if draw(st.booleans()):
                segs.append(f"ORC|SC|P{order}^EPJ|F{order}^LAB||CM")
            if draw(st.booleans()):
                segs.append(f"NTE|1||{_e(draw(SAFE))}")
            for k in range(1, draw(st.integers(1, 3)) + 1):
                segs.append(draw(obx_segments(k)))
        if not specimen_first:
            segs.append(spm)
    return ("\r".join(segs) + "\r").encode("latin-1", errors="strict")


def _facts(bundle: dict) -> list[tuple]:
    """Every mapped field of the results, independent of how they are grouped."""
    urls = _by_url(bundle)
    out = []
    for o in _res(bundle, "Observation"):
        spec = urls.get((o.get("specimen") or {}).get("reference"), {})
        sr = urls.get(((o.get("basedOn") or [{}])[0]).get("reference"), {})
        keep = {k: v for k, v in o.items() if k not in ("basedOn", "specimen", "subject")}
        out.append((json.dumps(keep, sort_keys=True),
                    json.dumps(spec.get("type"), sort_keys=True),
                    json.dumps(spec.get("identifier"), sort_keys=True),
                    json.dumps(sr.get("identifier"), sort_keys=True)))
    return sorted(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(oul_messages())
def test_oul_results_survive_fhir_oru_fhir(raw):
    msg = parse(raw)
    first, issues = to_bundle(msg)
    assert not [i for i in issues if i.rejects]
    back = bundle_to_oru_r01(first, control_id=msg.control_id, timestamp=BACK_TS)
    again, _ = to_bundle(parse(back))
    assert _facts(again) == _facts(first)
    assert _res(again, "Patient") == _res(first, "Patient")
    assert [d["status"] for d in _res(again, "DiagnosticReport")] == \
        [d["status"] for d in _res(first, "DiagnosticReport")]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(oml_messages())
def test_oml_output_agrees_with_hl7apy(hl7apy_reference, raw):
    first, _ = to_bundle(parse(raw))
    back = bundle_to_oml_o21(first, control_id="C1", timestamp=BACK_TS)
    assert hl7apy_reference.disagreements(hl7apy_reference.parse(back.decode()), parse(back)) == []
    Bundle.model_validate(first)


def test_oml_needs_a_service_request():
    with pytest.raises(ValueError, match="ServiceRequest"):
        bundle_to_oml_o21({"resourceType": "Bundle", "entry": []}, control_id="C",
                          timestamp=BACK_TS)
