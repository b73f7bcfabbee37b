"""Order rules: required fields, referred orders' specimen type."""
from mappings import systems


def _order(h, *, patient=True, requester=True, code="NPU19748", referred=False,
           specimen_type=None, link="request"):
    b = h.B()
    pat = b.patient()
    res = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
           "code": {"coding": [{"system": systems.NLK, "code": code}]} if code else {"text": "x"}}
    if patient:
        res["subject"] = pat
    if requester is True:
        res["requester"] = b.practitioner()
    elif requester:
        res["requester"] = requester
    if referred:
        res["performer"] = [b.add({"resourceType": "Organization", "name": "Lab"})]
    sr = b.add(res)
    if specimen_type is not None:
        sp = {"resourceType": "Specimen"}
        if specimen_type:
            sp["type"] = {"coding": [{"system": systems.V2_0487, "code": specimen_type}]}
        if link == "request":
            sp["request"] = [sr]
        ref = b.add(sp)
        if link == "specimen":
            res["specimen"] = [ref]
    # not b.bundle(): an order without subject is not valid FHIR, and that is the point
    return {"resourceType": "Bundle", "type": "transaction", "entry": b.entries}


def test_complete_order_passes(h):
    assert h.codes(_order(h)) == []
    assert h.codes(_order(h, referred=True, specimen_type="SER")) == []
    assert h.codes(_order(h, referred=True, specimen_type="SER", link="specimen")) == []


def test_missing_patient_requester_or_analysis(h):
    assert h.codes(_order(h, patient=False)) == ["ORDER-PATIENT-MISSING"]
    assert h.codes(_order(h, requester=False)) == ["ORDER-REQUESTER-MISSING"]
    assert h.codes(_order(h, requester={"display": "Dr. Who"})) == ["ORDER-REQUESTER-MISSING"]
    assert h.codes(_order(h, code=None)) == ["ORDER-ANALYSIS-UNKNOWN"]
    assert h.codes(_order(h, code="NPU99999")) == ["ORDER-ANALYSIS-UNKNOWN"]


def test_logical_requester_identifier_is_enough(h):
    ref = {"identifier": {"system": systems.HPR, "value": "9144889"}}
    assert h.codes(_order(h, requester=ref)) == []


def test_referred_order_needs_specimen_type(h):
    assert h.codes(_order(h, referred=True)) == ["ORDER-SPECIMEN-TYPE-MISSING"]
    assert h.codes(_order(h, referred=True, specimen_type="")) == ["ORDER-SPECIMEN-TYPE-MISSING"]
    assert h.codes(_order(h, referred=False)) == []          # POC orders: no specimen type needed


def test_order_rules_ignore_result_messages(h):
    b = h.B()
    pat = b.patient()
    b.service_request(pat)                                   # no requester, inside an ORU
    b.observation("NPU19748", 27, "mg/L", patient=pat, specimen=b.specimen(patient=pat))
    assert not any(c.startswith("ORDER-") for c in h.codes(b.bundle()))


def test_hostile_order_shapes_do_not_crash(h):
    for sr in ({"resourceType": "ServiceRequest", "subject": "x", "requester": [],
                "performer": "y", "specimen": {"a": 1}, "code": []},
               {"resourceType": "ServiceRequest", "performer": [None, 3, {"reference": 5}]}):
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": sr}]}
        got = h.codes(bundle)
        assert "ORDER-PATIENT-MISSING" in got and "ORDER-REQUESTER-MISSING" in got
