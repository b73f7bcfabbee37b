"""Orders in: validation of untrusted input (OperationOutcome with rule code,
FHIRPath location and text; no stored change), conditional create under
retries and concurrency, and the Prefer header."""
from __future__ import annotations

import asyncio
import copy

import orjson
import pytest

from fhirkit import CRP, codes_of, counts, mixed_order, patient, service_request, transaction


def _expressions(oo: dict) -> list[str]:
    return [x for i in oo["issue"] for x in i.get("expression", [])]


async def _rejected_without_change(gw, client, body=None, *, raw=None, path="/fhir", status=None,
                                   stored_message=True):
    before = await counts(gw.pool)
    msgs = await gw.pool.fetchval("SELECT count(*) FROM message WHERE status = 'rejected'")
    got, oo, _ = await client.post(path, body, raw=raw)
    assert oo["resourceType"] == "OperationOutcome"
    assert all(i["details"]["text"] for i in oo["issue"])
    if status is not None:
        assert got == status
    assert got in (400, 413, 422)
    assert await counts(gw.pool) == before
    assert await gw.pool.fetchval("SELECT count(*) FROM message WHERE status = 'rejected'") == \
        msgs + (1 if stored_message else 0)
    return oo


async def test_invalid_json(fhir_gw):
    gw, c = fhir_gw
    oo = await _rejected_without_change(gw, c["ehr"], raw=b'{"resourceType": "Bundle", "type": ', status=400)
    assert codes_of(oo) == {"JSON-INVALID"}


async def test_wrong_type(fhir_gw):
    gw, c = fhir_gw
    b = mixed_order()
    b["entry"][1]["resource"]["status"] = 5
    oo = await _rejected_without_change(gw, c["ehr"], b, status=422)
    assert "FHIR-STRUCTURE" in codes_of(oo)
    assert "Bundle.entry[1].resource.status" in _expressions(oo)


async def test_unknown_element(fhir_gw):
    gw, c = fhir_gw
    b = mixed_order()
    b["entry"][2]["resource"]["colour"] = "blue"
    oo = await _rejected_without_change(gw, c["ehr"], b, status=422)
    assert codes_of(oo) == {"FHIR-UNKNOWN-ELEMENT"}
    assert _expressions(oo) == ["Bundle.entry[2].resource.colour"]


async def test_missing_required_element(fhir_gw):
    gw, c = fhir_gw
    b = mixed_order()
    del b["entry"][1]["resource"]["intent"]
    oo = await _rejected_without_change(gw, c["ehr"], b, status=422)
    assert "FHIR-REQUIRED" in codes_of(oo)
    assert "Bundle.entry[1].resource.intent" in _expressions(oo)


@pytest.mark.parametrize("entry,element,target", [
    (1, "subject", {"reference": "Practitioner/123"}),
    (1, "specimen", [{"reference": "Patient/1"}]),
    (3, "request", [{"reference": "urn:uuid:patient-1"}]),
])
async def test_wrong_reference_target(fhir_gw, entry, element, target):
    gw, c = fhir_gw
    b = mixed_order()
    b["entry"][entry]["resource"][element] = target
    oo = await _rejected_without_change(gw, c["ehr"], b, status=422)
    assert codes_of(oo) == {"FHIR-REFERENCE-TARGET"}
    assert _expressions(oo)[0].startswith(f"Bundle.entry[{entry}].resource.{element}")


async def test_twenty_megabyte_body(fhir_gw):
    """Refused before it is read (Content-Length), so not even a message row."""
    gw, c = fhir_gw
    b = mixed_order()
    b["entry"][0]["resource"]["name"][0]["family"] = "x" * (20 * 1024 * 1024)
    oo = await _rejected_without_change(gw, c["ehr"], b, status=413, stored_message=False)
    assert codes_of(oo) == {"BODY-TOO-LARGE"}


async def test_twenty_megabyte_chunked_body(fhir_gw):
    """Without Content-Length the read stops at the limit; the refusal is stored."""
    gw, c = fhir_gw
    body = orjson.dumps(mixed_order()).replace(b'"Danser"', b'"' + b"x" * (20 * 1024 * 1024) + b'"')

    async def chunks():
        step = 1 << 20
        for i in range(0, len(body), step):
            yield body[i:i + step]
    oo = await _rejected_without_change(gw, c["ehr"], raw=chunks(), status=413)
    assert codes_of(oo) == {"BODY-TOO-LARGE"}


async def test_deep_nesting(fhir_gw):
    gw, c = fhir_gw
    body = orjson.dumps(mixed_order())
    deep = b'{"url": "urn:x", "extension": [' * 300 + b'{"url": "urn:x", "valueString": "e"}' + b"]}" * 300
    raw = body.replace(b'"gender":', b'"extension": [' + deep + b'], "gender":', 1)
    oo = await _rejected_without_change(gw, c["ehr"], raw=raw, status=400)
    assert codes_of(oo) == {"JSON-TOO-DEEP"}


async def test_clinical_rule_rejection_carries_rule_code(fhir_gw):
    gw, c = fhir_gw
    b = mixed_order(fnr="13116900217")          # wrong mod-11 check digit
    oo = await _rejected_without_change(gw, c["ehr"], b, status=422)
    assert "PID-FNR-CHECKSUM" in codes_of(oo)
    assert any(x.startswith("Bundle.entry[0].resource.identifier") for x in _expressions(oo))


async def test_unroutable_analysis(fhir_gw):
    gw, c = fhir_gw
    b = transaction(("urn:uuid:patient-1", patient()),
                    ("urn:uuid:sr", service_request(("NPU99999", "Unknown"))))
    oo = await _rejected_without_change(gw, c["ehr"], b, status=422)
    assert "ORDER-NOT-ROUTABLE" in codes_of(oo)
    assert "Bundle.entry[1].resource.code" in _expressions(oo)


async def test_order_without_requester_identifier(fhir_gw):
    gw, c = fhir_gw
    sr = service_request(CRP)
    del sr["identifier"]
    oo = await _rejected_without_change(gw, c["ehr"], transaction(("urn:uuid:patient-1", patient()),
                                                                  ("urn:uuid:sr", sr)), status=422)
    assert "ORDER-IDENTIFIER-MISSING" in codes_of(oo)


async def test_invalid_corpus_resources(fhir_gw, corpus):
    gw, c = fhir_gw
    for path in sorted((corpus / "fhir" / "invalid").glob("*.json")):
        raw = path.read_bytes()
        try:
            res = orjson.loads(raw)
        except orjson.JSONDecodeError:
            res = None
        if res is not None and res.get("resourceType") == "Observation":
            body = orjson.dumps(transaction(("urn:uuid:pat", patient()), ("urn:uuid:o", res)))
            await _rejected_without_change(gw, c["lis"], raw=body)
        else:
            await _rejected_without_change(gw, c["ehr"], raw=raw)


async def test_retried_post_creates_one_order(fhir_gw):
    gw, c = fhir_gw
    b = mixed_order()
    s1, r1, _ = await c["ehr"].post("/fhir", copy.deepcopy(b))
    before = await counts(gw.pool)
    s2, r2, _ = await c["ehr"].post("/fhir", copy.deepcopy(b))
    assert s1 == s2 == 200
    ids1 = [e["response"]["location"] for e in r1["entry"] if "ServiceRequest" in e["response"]["location"]]
    ids2 = [e["response"]["location"] for e in r2["entry"] if "ServiceRequest" in e["response"]["location"]]
    assert ids1 == ids2
    assert {e["response"]["status"] for e in r2["entry"] if "ServiceRequest" in e["response"]["location"]} == {"200 OK"}
    after = await counts(gw.pool)
    assert after["fhir_service_request"] == before["fhir_service_request"] == 2
    assert after["fhir_specimen"] == before["fhir_specimen"] == 2


async def test_concurrent_identical_posts_create_one_order(fhir_gw):
    gw, c = fhir_gw
    b = mixed_order()
    results = await asyncio.gather(*[c["ehr"].post("/fhir", copy.deepcopy(b)) for _ in range(8)])
    assert {r[0] for r in results} == {200}
    locations = {tuple(e["response"]["location"] for e in r[1]["entry"]
                       if "ServiceRequest" in e["response"]["location"]) for r in results}
    assert len(locations) == 1
    assert await gw.pool.fetchval("SELECT count(*) FROM fhir_service_request") == 2
    assert await gw.pool.fetchval("SELECT count(*) FROM fhir_specimen") == 2


async def test_same_identifier_from_another_ehr_is_another_order(fhir_gw):
    gw, c = fhir_gw
    b = mixed_order()
    await c["ehr"].post("/fhir", copy.deepcopy(b))
    status, _, _ = await c["other-ehr"].post("/fhir", copy.deepcopy(b))
    assert status == 200
    assert await gw.pool.fetchval("SELECT count(DISTINCT requester_system) FROM fhir_service_request") == 2


async def test_single_service_request_prefer_and_if_none_exist(fhir_gw):
    gw, c = fhir_gw
    sr = service_request(CRP)
    sr["subject"] = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216"}}
    key = sr["identifier"][0]["value"]
    h = {"If-None-Exist": f"identifier=urn:ietf:rfc:3986|{key}"}
    status, body, headers = await c["ehr"].post("/fhir/ServiceRequest", sr,
                                                headers={**h, "Prefer": "return=minimal"})
    assert status == 201 and body is None and "/fhir/ServiceRequest/" in headers["Location"]
    status, body, headers2 = await c["ehr"].post("/fhir/ServiceRequest", sr, headers=h)
    assert status == 200 and body["resourceType"] == "ServiceRequest"
    assert headers2["Location"] == headers["Location"]
    assert body["subject"]["reference"].startswith("Patient/")
    status, body, _ = await c["ehr"].post("/fhir/ServiceRequest", sr,
                                          headers={**h, "Prefer": "return=OperationOutcome"})
    assert status == 200 and body["resourceType"] == "OperationOutcome"
    assert await gw.pool.fetchval("SELECT count(*) FROM fhir_service_request") == 1


async def test_single_service_request_rejections(fhir_gw):
    gw, c = fhir_gw
    sr = service_request(CRP)
    sr["subject"] = {"reference": "Device/1"}
    oo = await _rejected_without_change(gw, c["ehr"], sr, path="/fhir/ServiceRequest", status=422)
    assert codes_of(oo) == {"FHIR-REFERENCE-TARGET"}
    assert _expressions(oo) == ["ServiceRequest.subject.reference"]
    oo = await _rejected_without_change(gw, c["ehr"], {"resourceType": "Patient"}, path="/fhir/ServiceRequest")
    assert codes_of(oo) == {"FHIR-RESOURCE-TYPE"}


@pytest.mark.parametrize("raw", [
    b'[]', b'"Bundle"', b'{"resourceType": "Bundle", "type": "transaction", "entry": 5}',
    b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Nope"}}]}',
    b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "ServiceRequest",'
    b' "status": "active", "intent": "order", "subject": {"reference": "Patient/1"},'
    b' "contained": [{"resourceType": "Nope"}]}, "request": {"method": "POST", "url": "ServiceRequest"}}]}',
    b'\xff\xfe{}', b'',
    b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": ["x"]}}]}',
    b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": {"a": 1}}}]}',
])
async def test_hostile_bodies_get_an_operation_outcome(fhir_gw, raw):
    gw, c = fhir_gw
    await _rejected_without_change(gw, c["ehr"], raw=raw)
