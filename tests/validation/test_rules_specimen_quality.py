"""HAEMOLYSIS and REAGENT-LOT-EXPIRED."""
from gateway.validation import HAEMOLYSIS_INDEX_EXT


def _k(h, *, index=None, condition=None, code="NPU03230", unit="mmol/L", value=4.8,
       index_result=None):
    b = h.B()
    pat = b.patient()
    sp = b.specimen(type_code="SER", patient=pat)
    spec = b.entries[-1]["resource"]
    if index is not None:
        spec["extension"] = [{"url": HAEMOLYSIS_INDEX_EXT, "valueDecimal": index}]
    if condition:
        spec["condition"] = [{"coding": [{"code": condition}]}]
    b.observation(code, value, unit, patient=pat, specimen=sp)
    if index_result is not None:
        b.observation("H-INDEX", index_result, None, system="urn:labgate:code:L",
                      patient=pat, specimen=sp)
    return b.bundle()


def test_index_above_limit_rejects_potassium(h):
    issues = h.validate(_k(h, index=120), h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("HAEMOLYSIS", "error")]
    assert "H-index above 90" in issues[0].text and "hemolysert" in issues[0].text_nb


def test_index_at_or_below_limit_passes(h):
    assert h.codes(_k(h, index=90)) == []
    assert h.codes(_k(h, index=10)) == []
    assert h.codes(_k(h)) == []


def test_index_sent_as_its_own_result(h):
    assert h.codes(_k(h, index_result=150)) == ["HAEMOLYSIS"]
    # the index result itself is not judged as an (unknown) analysis
    assert h.codes(_k(h, index_result=20)) == []


def test_flag_fails_where_the_table_says_so(h):
    assert h.codes(_k(h, condition="HEM")) == ["HAEMOLYSIS"]
    assert h.codes(_k(h, condition="hem")) == ["HAEMOLYSIS"]
    assert h.codes(_k(h, condition="CLOT")) == []


def test_unaffected_analyte_passes(h):
    assert h.codes(_k(h, code="NPU19748", unit="mg/L", value=27, index=300,
                      condition="HEM")) == []
    got = h.codes(_k(h, code="NPU03429", value=140, index=300, condition="HEM"))
    assert "HAEMOLYSIS" not in got


def _device_bundle(h, expiry, analysed=None, raw=False):
    b = h.B()
    pat = b.patient()
    sp = b.specimen(patient=pat)
    dev = b.add({"resourceType": "Device", "lotNumber": "10012345", "expirationDate": expiry,
                 "identifier": [{"value": "AF2-000987"}]})
    kw = {"analysed": analysed} if analysed else {}
    b.observation("NPU19748", 27, "mg/L", patient=pat, specimen=sp, device=dev, **kw)
    return {"resourceType": "Bundle", "type": "transaction", "entry": b.entries} if raw \
        else b.bundle()


def test_reagent_lot_expired_before_the_test_date(h):
    issues = h.validate(_device_bundle(h, "2025-03-13"), h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("REAGENT-LOT-EXPIRED", "error")]
    assert "10012345" in issues[0].text and "NPU19748" in issues[0].text


def test_reagent_lot_usable_through_its_expiry_day(h):
    assert h.codes(_device_bundle(h, "2025-03-14")) == []
    assert h.codes(_device_bundle(h, "2026-01-31")) == []


def test_reagent_expiry_with_time_and_garbage(h):
    assert h.codes(_device_bundle(h, "2025-03-14T09:00:00+01:00")) == ["REAGENT-LOT-EXPIRED"]
    assert h.codes(_device_bundle(h, "2025-03-14T12:00:00+01:00")) == []
    assert h.codes(_device_bundle(h, "soon", raw=True)) == []       # unreadable: not judged
    assert h.codes(_device_bundle(h, 20250101, raw=True)) == []
