"""Analysis code, unit, specimen type, plausibility and critical-value rules."""
import pytest

from gateway.validation import CRITICAL_HIGH, CRITICAL_LOW, PHONE_NOTIFY_TAG
from mappings import systems


def _obs(bundle):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"][0]


@pytest.mark.parametrize("system", sorted(systems.NLK_ALIASES))
def test_nlk_code_accepted_in_every_spelling(h, system):
    assert h.codes(h.poc(system=system)) == []


def test_unknown_nlk_code_is_rejected(h):
    issues = h.validate(h.poc("NPU99999", 1, "mg/L"), h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("ANALYSIS-UNKNOWN", "error")]
    assert "NPU99999" in issues[0].text and issues[0].location.endswith(".code")


def test_lactate_is_known_by_loinc(h):
    bundle = h.poc("32693-4", 1.8, "mmol/L", system=systems.LOINC, specimen_type="BLDV")
    assert h.codes(bundle) == []


def test_loinc_only_coding_maps_when_unambiguous(h):
    assert h.codes(h.poc(None, 27, "mg/L", loinc="1988-5")) == []          # CRP
    assert h.codes(h.poc(None, 4.1, "mmol/L", loinc="2823-3",
                         specimen_type="PLAS")) == ["ANALYSIS-UNKNOWN"]    # two K rows


def test_panel_header_is_not_a_result(h):
    b = h.B()
    pat = b.patient()
    sp = b.specimen(patient=pat)
    member = b.observation(patient=pat, specimen=sp)
    b.observation("POCPANEL", None, None, system="urn:labgate:local", patient=pat)
    b.entries[-1]["resource"]["hasMember"] = [member]
    assert h.codes(b.bundle()) == []


def test_accepted_unit_alias_is_normalised(h):
    bundle = h.poc("NPU02593", 7.1, "10E9/L", specimen_type="BLDV")
    assert h.codes(bundle) == []
    vq = _obs(bundle)["valueQuantity"]
    assert (vq["code"], vq["system"], vq["unit"]) == ("10*9/L", systems.UCUM, "10E9/L")


@pytest.mark.parametrize("code,value,unit,expected,dst", [
    ("NOR05172", 112, "g/L", 11.2, "g/dL"),       # Hb g/L -> g/dL
    ("NPU28309", 11.2, "g/dL", 112, "g/L"),       # Hb g/dL -> g/L
    ("NPU19748", 2.7, "mg/dL", 27, "mg/L"),       # CRP
])
def test_safe_conversion_in_place_with_information(h, code, value, unit, expected, dst):
    b = h.B()
    pat = b.patient()
    b.observation(code, value, unit, patient=pat, specimen=b.specimen(patient=pat))
    b.entries[-1]["resource"]["referenceRange"] = [
        {"low": {"value": value, "unit": unit, "system": systems.UCUM, "code": unit}}]
    bundle = b.bundle()
    issues = h.validate(bundle, h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("UNIT-CONVERTED", "information")]
    assert not issues[0].rejects
    obs = _obs(bundle)
    assert obs["valueQuantity"] == {"value": expected, "unit": dst, "system": systems.UCUM, "code": dst}
    assert obs["referenceRange"][0]["low"]["code"] == dst
    assert obs["referenceRange"][0]["low"]["value"] == expected
    h.fhir_valid(bundle)                       # still valid FHIR after the change


def test_conversion_off_means_reject(h):
    bundle = h.poc("NOR05172", 112, "g/L")
    assert h.codes(bundle, h.ctx(settings={"UNIT-CONVERTED": "off"})) == ["UNIT-NOT-ALLOWED"]
    assert _obs(bundle)["valueQuantity"]["value"] == 112


@pytest.mark.parametrize("unit", ["mmol/L", "%", None])
def test_wrong_or_missing_unit_is_rejected(h, unit):
    issues = h.validate(h.poc("NPU19748", 27, unit), h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("UNIT-NOT-ALLOWED", "error")]


def test_hba1c_percent_is_not_converted(h):
    # %<->mmol/mol is not a factor; must be rejected, never guessed
    assert h.codes(h.poc("NPU27300", 6.5, "%", specimen_type="BLDC")) == ["UNIT-NOT-ALLOWED"]


def test_inr_without_unit_is_fine(h):
    assert h.codes(h.poc("NPU01685", 2.4, None)) == []


def test_text_result_needs_no_unit(h):
    b = h.B()
    pat = b.patient()
    sp = b.specimen("HNX", systems.SPECIMEN_TYPE_8351, patient=pat)
    b.observation("NPU59390", None, None, patient=pat, specimen=sp)
    b.entries[-1]["resource"]["valueCodeableConcept"] = {"text": "Ikke påvist"}
    assert h.codes(b.bundle()) == []


@pytest.mark.parametrize("code,type_code,system,ok", [
    ("NPU19748", "BLDC", systems.V2_0487, True),
    ("NPU19748", "P", systems.SPECIMEN_TYPE_8351, True),
    ("NPU19748", "P", "http://helsedir.no/fhir/CodeSystem/no-kodeverk-8351", True),
    ("NPU19748", "U", systems.SPECIMEN_TYPE_8351, False),
    ("NPU19748", "UR", systems.V2_0487, False),
    ("NPU02192", "BLDC", systems.V2_0487, False),   # venous-plasma code on a capillary sample
    ("NPU22089", "BLDC", systems.V2_0487, True),
])
def test_specimen_type_fits_analysis(h, code, type_code, system, ok):
    unit = "mmol/L" if code != "NPU19748" else "mg/L"
    bundle = h.poc(code, 5, unit)
    sp = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Specimen"][0]
    sp["type"] = {"coding": [{"system": system, "code": type_code}]}
    h.fhir_valid(bundle)
    assert h.codes(bundle) == ([] if ok else ["SPECIMEN-TYPE-MISMATCH"])


def test_specimen_type_missing_warns(h):
    bundle = h.poc(specimen_type=None)
    issues = h.validate(bundle, h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("SPECIMEN-TYPE-MISSING", "warning")]


@pytest.mark.parametrize("code,value,unit,comparator,ok", [
    ("NPU03230", 4.1, "mmol/L", None, True),
    ("NPU03230", 10.0, "mmol/L", None, True),       # bounds are plausible
    ("NPU03230", 12.5, "mmol/L", None, False),
    ("NPU03230", 0.4, "mmol/L", None, False),
    ("NPU19748", -1, "mg/L", None, False),
    ("NPU19748", 5, "mg/L", "<", True),             # "<5" stays a comparator
    ("NPU01685", 8, "1", ">", True),                # ">8" from a POC INR meter
    ("NPU01685", 20, "1", ">", False),              # ">20": certainly too high
    ("NPU01685", 20, "1", "<", True),               # "<20" says nothing about too high
    ("NOR05172", 30, "g/dL", None, False),
    ("NPU28309", 300, "g/dL", None, False),         # converted to 3000 g/L first
])
def test_physiological_plausibility(h, code, value, unit, comparator, ok):
    spec = "PLAS" if code == "NPU03230" else "BLDV"
    bundle = h.poc(code, value, unit, specimen_type=spec, comparator=comparator)
    got = [c for c in h.codes(bundle) if c not in ("CRITICAL-VALUE", "UNIT-CONVERTED")]
    assert got == ([] if ok else ["VALUE-IMPLAUSIBLE"])


@pytest.mark.parametrize("code,value,unit,spec,side", [
    ("NPU03230", 6.5, "mmol/L", "PLAS", "high"),
    ("NPU03230", 2.4, "mmol/L", "PLAS", "low"),
    ("NOR05172", 6.5, "g/dL", "BLDV", "low"),
    ("NPU28309", 65, "g/L", "BLDV", "low"),
    ("NOR05172", 65, "g/L", "BLDV", "low"),         # converted to 6.5 g/dL, then judged
    ("NPU02192", 1.8, "mmol/L", "PLAS", "low"),
    ("NPU01685", 6.5, "1", "PLAS", "high"),
    ("NPU01685", 8, "1", "PLAS", "high"),           # comparator below
    ("32693-4", 4, "mmol/L", "BLDV", "high"),       # lactate >= 4 (inclusive row)
])
def test_critical_value_is_flagged_not_rejected(h, code, value, unit, spec, side):
    system = systems.LOINC if code[0].isdigit() else systems.NLK
    bundle = h.poc(code, value, unit, specimen_type=spec, system=system,
                   comparator=">" if value == 8 else None)
    issues = [i for i in h.validate(bundle, h.ctx()) if i.code != "UNIT-CONVERTED"]
    assert [(i.code, i.severity) for i in issues] == [("CRITICAL-VALUE", "warning")]
    assert not any(i.rejects for i in issues)
    obs = _obs(bundle)
    flag = CRITICAL_HIGH if side == "high" else CRITICAL_LOW
    assert obs["interpretation"][0]["coding"] == [flag]
    assert PHONE_NOTIFY_TAG in obs["meta"]["tag"]
    assert "{" not in issues[0].text and "{" not in issues[0].text_nb
    h.fhir_valid(bundle)


@pytest.mark.parametrize("code,value,unit,spec", [
    ("NPU03230", 6.2, "mmol/L", "PLAS"),            # at the limit: Haraldsplass is strict
    ("NPU03230", 2.5, "mmol/L", "PLAS"),
    ("32693-4", 3.9, "mmol/L", "BLDV"),
    ("NPU19748", 250, "mg/L", "BLDC"),               # CRP has no critical limit
])
def test_not_critical(h, code, value, unit, spec):
    system = systems.LOINC if code[0].isdigit() else systems.NLK
    bundle = h.poc(code, value, unit, specimen_type=spec, system=system)
    assert h.codes(bundle) == []
    assert "interpretation" not in _obs(bundle)


def test_critical_flag_replaces_h_flag_and_is_idempotent(h):
    bundle = h.poc("NPU03230", 7.0, "mmol/L", specimen_type="PLAS")
    obs = _obs(bundle)
    obs["interpretation"] = [{"coding": [{"system": systems.V3_INTERPRETATION, "code": "H"}]},
                             {"text": "local note"}]
    ctx = h.ctx()
    h.validate(bundle, ctx)
    h.validate(bundle, ctx)
    assert obs["interpretation"] == [{"coding": [CRITICAL_HIGH]}, {"text": "local note"}]
    assert obs["meta"]["tag"].count(PHONE_NOTIFY_TAG) == 1


def test_critical_off_leaves_the_bundle_alone(h):
    bundle = h.poc("NPU03230", 7.0, "mmol/L", specimen_type="PLAS")
    assert h.codes(bundle, h.ctx(settings={"CRITICAL-VALUE": "off"})) == []
    assert "meta" not in _obs(bundle)
