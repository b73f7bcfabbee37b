"""Forbidden paths: an EHR sees only what it ordered, a laboratory only what
was referred to it; refusals return no data and are audited."""
from __future__ import annotations

from fhirkit import lab_result, mixed_order, resources


async def _setup(c):
    _, resp, _ = await c["ehr"].post("/fhir", mixed_order(poc_placer="ACC-1"))
    srs = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in resp["entry"]
           if e["resource"]["resourceType"] == "ServiceRequest"}
    crp, k = srs["NPU19748"], srs["NPU03230"]
    status, res, _ = await c["lis"].post("/fhir", lab_result(k["id"]))
    assert status == 200
    return crp, k, res


async def test_another_ehr_sees_nothing(fhir_gw):
    gw, c = fhir_gw
    crp, k, _ = await _setup(c)
    other = c["other-ehr"]
    for sr in (crp, k):
        status, body, _ = await other.get(f"/fhir/ServiceRequest/{sr['id']}")
        assert status == 404 and body["resourceType"] == "OperationOutcome"
        assert sr["id"] not in str(body)
    _, page, _ = await other.get("/fhir/ServiceRequest")
    assert not page.get("entry")
    _, reports, _ = await other.get("/fhir/DiagnosticReport")
    assert not reports.get("entry")
    _, obs, _ = await other.get("/fhir/Observation", params={"based-on": f"ServiceRequest/{k['id']}"})
    assert not obs.get("entry")
    _, mine, _ = await c["ehr"].get("/fhir/Observation", params={"based-on": f"ServiceRequest/{k['id']}"})
    obs_id = resources(mine, "Observation")[0]["id"]
    status, _, _ = await other.get(f"/fhir/Observation/{obs_id}")
    assert status == 404
    spec_id = k["specimen"][0]["reference"].split("/")[1]
    status, _, _ = await other.get(f"/fhir/Specimen/{spec_id}")
    assert status == 404
    denied = await gw.pool.fetchval("SELECT count(*) FROM audit_log WHERE actor = 'other-ehr' AND outcome = 'denied'")
    assert denied >= 4


async def test_laboratory_sees_only_its_referrals(fhir_gw):
    gw, c = fhir_gw
    crp, k, _ = await _setup(c)
    # The POC order was never referred: no laboratory sees it.
    status, _, _ = await c["lis"].get(f"/fhir/ServiceRequest/{crp['id']}")
    assert status == 404
    # Another laboratory cannot read, claim or receive the referral.
    lis2 = c["lis2"]
    status, _, _ = await lis2.get(f"/fhir/ServiceRequest/{k['id']}")
    assert status == 404
    task = {"resourceType": "Task", "status": "accepted", "intent": "order",
            "focus": {"reference": f"ServiceRequest/{k['id']}"}}
    status, _, _ = await lis2.post("/fhir/Task", task)
    assert status == 404
    spec_id = k["specimen"][0]["reference"].split("/")[1]
    status, _, _ = await lis2.post(f"/fhir/Specimen/{spec_id}/$receive")
    assert status == 404
    assert await gw.pool.fetchval("SELECT received_at FROM fhir_specimen WHERE id = $1::uuid", spec_id) is None
    _, reports, _ = await lis2.get("/fhir/DiagnosticReport")
    assert not reports.get("entry")
    # Another laboratory's result cannot complete the order.
    status, _, _ = await lis2.post("/fhir", lab_result(k["id"], value=9.9))
    _, obs, _ = await c["ehr"].get("/fhir/Observation", params={"based-on": f"ServiceRequest/{k['id']}"})
    assert [o["valueQuantity"]["value"] for o in resources(obs, "Observation")] == [4.1]


async def test_roles_and_tokens(fhir_gw):
    gw, c = fhir_gw
    status, body, _ = await c["lis"].post("/fhir", mixed_order())       # a LIS may not order
    assert status == 403 and body["resourceType"] == "OperationOutcome"
    status, _, _ = await c["poc"].get("/fhir/ServiceRequest")           # an instrument may not read orders
    assert status == 403
    status, _, _ = await c["ehr"].post("/fhir/ServiceRequest/$claim")  # an EHR may not claim
    assert status == 403
    from fhirkit import Client
    anon = Client(c["ehr"].base, "lg_not-a-token")
    try:
        status, body, _ = await anon.post("/fhir", mixed_order())
        assert status == 401 and body["resourceType"] == "OperationOutcome"
        status, _, _ = await anon.get("/fhir/ServiceRequest")
        assert status == 401
    finally:
        await anon.close()
    assert await gw.pool.fetchval("SELECT count(*) FROM fhir_service_request") == 0


async def test_patient_data_from_one_ehr_is_not_shown_to_another(fhir_gw):
    gw, c = fhir_gw
    await c["ehr"].post("/fhir", mixed_order(poc_placer="PAT-1"))
    other = mixed_order(poc_placer="PAT-2")
    other["entry"][0]["resource"]["name"] = [{"family": "Annen", "given": ["Kilde"]}]
    status, _, _ = await c["other-ehr"].post("/fhir", other)
    assert status == 200
    _, page, _ = await c["ehr"].get("/fhir/ServiceRequest", params={"_include": "ServiceRequest:subject"})
    [pat] = resources(page, "Patient")
    assert pat["name"][0]["family"] == "Danser"
    _, page, _ = await c["other-ehr"].get("/fhir/ServiceRequest", params={"_include": "ServiceRequest:subject"})
    [pat] = resources(page, "Patient")
    assert pat["name"][0]["family"] == "Annen"
