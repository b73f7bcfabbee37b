"""Organisation number (ENH) and HER-id checks where present."""
from mappings import systems


def _with_org(h, system, value, where="Organization"):
    b = h.B()
    pat = b.patient()
    b.add({"resourceType": where, "identifier": [{"system": system, "value": value}]}
          if where == "Organization" else
          {"resourceType": where, "identifier": [{"system": system, "value": value}]})
    b.observation("NPU19748", 27, "mg/L", patient=pat, specimen=b.specimen(patient=pat))
    return {"resourceType": "Bundle", "type": "transaction", "entry": b.entries}


def test_valid_organisation_number_and_her_id_pass(h):
    assert h.codes(_with_org(h, systems.ENH, "974760673")) == []
    assert h.codes(_with_org(h, "http://hl7.no/fhir/NamingSystem/ENH", " 974760673 ")) == []
    assert h.codes(_with_org(h, systems.HER, "8094")) == []
    assert h.codes(_with_org(h, systems.HER, "112374", where="Practitioner")) == []


def test_wrong_check_digit_or_shape_of_organisation_number(h):
    for bad in ("974760672", "97476067", "9747606733", "97476067A", ""):
        issues = h.validate(_with_org(h, systems.ENH, bad), h.ctx())
        assert [(i.code, i.severity) for i in issues] == [("ORGNR-INVALID", "error")], bad
        assert issues[0].location == "Bundle.entry[1].resource.identifier[0].value"


def test_her_id_must_be_digits(h):
    for bad in ("80a", "", "-1"):
        assert h.codes(_with_org(h, systems.HER, bad)) == ["HER-ID-FORMAT"], bad
    b = _with_org(h, systems.HER, "8094")
    b["entry"][1]["resource"]["identifier"][0]["value"] = 8094     # a JSON number, not a string
    assert h.codes(b) == ["HER-ID-FORMAT"]


def test_other_identifier_systems_are_not_judged(h):
    assert h.codes(_with_org(h, "urn:oid:2.16.578.1.12.4.1.4.102", "x-y")) == []   # RESH
