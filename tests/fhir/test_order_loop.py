"""The whole loop over real HTTP, MLLP and PostgreSQL: an EHR orders one POC
analysis (CRP) and one referred analysis (potassium); the hospital LIS pulls
and claims the referral, reports the specimen received and posts the
result; an instrument's ORU^R01 completes the POC analysis; the EHR gets both
results linked to its orders, and the orders are completed."""
from __future__ import annotations

import asyncio

from fhirkit import FNR, codes_of, lab_result, mixed_order, resources
from support import field, mllp_exchange, oru_r01


async def _until(predicate, timeout=20.0):
    async def poll():
        while not await predicate():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


async def test_order_referral_claim_result_and_poc_result(fhir_gw):
    gw, c = fhir_gw
    ehr, lis = c["ehr"], c["lis"]

    status, resp, _ = await ehr.post("/fhir", mixed_order(poc_placer="ORD-1"))
    assert status == 200
    srs = {sr["code"]["coding"][0]["code"]: sr for sr in resources_of_response(resp, "ServiceRequest")}
    crp, k = srs["NPU19748"], srs["NPU03230"]

    # The hospital LIS sees only the referred analysis, with its specimen and patient.
    status, page, _ = await lis.get("/fhir/ServiceRequest", params=[
        ("performer", "lis"), ("status", "active"), ("_include", "ServiceRequest:specimen"),
        ("_include", "ServiceRequest:subject"), ("_count", "10")])
    assert status == 200
    matches = [e["resource"] for e in page["entry"] if e["search"]["mode"] == "match"]
    assert [m["id"] for m in matches] == [k["id"]]
    included = {e["resource"]["resourceType"] for e in page["entry"] if e["search"]["mode"] == "include"}
    assert included == {"Specimen", "Patient"}
    spec_k = resources(page, "Specimen")[0]
    assert spec_k["request"] == [{"reference": f"ServiceRequest/{k['id']}"}]

    # Another laboratory sees nothing of it.
    status, other, _ = await c["lis2"].get("/fhir/ServiceRequest", params={"status": "active"})
    assert status == 200 and not other.get("entry")

    # Claim: a Task per referral; a second claim of the same referral conflicts.
    task = {"resourceType": "Task", "status": "accepted", "intent": "order",
            "focus": {"reference": f"ServiceRequest/{k['id']}"}}
    status, created, _ = await lis.post("/fhir/Task", task)
    assert status == 201 and created["focus"]["reference"] == f"ServiceRequest/{k['id']}"
    status, conflict, _ = await lis.post("/fhir/Task", task)
    assert status == 409 and "CLAIM-TAKEN" in codes_of(conflict)

    # Receipt within the stability limit: recorded, not held.
    status, received, _ = await lis.post(f"/fhir/Specimen/{spec_k['id']}/$receive")
    assert status == 200 and received["receivedTime"] and "condition" not in received

    # The LIS posts the result; the order completes and the EHR can read it.
    status, rresp, _ = await lis.post("/fhir", lab_result(k["id"]))
    assert status == 200, rresp
    status, k_now, _ = await ehr.get(f"/fhir/ServiceRequest/{k['id']}")
    assert status == 200 and k_now["status"] == "completed"
    status, reports, _ = await ehr.get("/fhir/DiagnosticReport",
                                       params={"subject:identifier": f"{FNR}|13116900216"})
    report = resources(reports, "DiagnosticReport")[0]
    assert {"reference": f"ServiceRequest/{k['id']}"} in report["basedOn"]
    status, obs, _ = await ehr.get("/fhir/Observation", params={"based-on": f"ServiceRequest/{k['id']}"})
    [o] = resources(obs, "Observation")
    assert o["valueQuantity"]["value"] == 4.1
    assert report["result"] == [{"reference": f"Observation/{o['id']}"}]

    # The POC analysis is completed by an instrument's ORU^R01 over MLLP (placer ORD-1).
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01("POC-0001")])
    assert field(ack, "MSA", 1) == "AA"

    async def crp_completed():
        _, sr, _ = await ehr.get(f"/fhir/ServiceRequest/{crp['id']}")
        return sr["status"] == "completed"
    await _until(crp_completed)
    status, obs, _ = await ehr.get("/fhir/Observation", params={"based-on": f"ServiceRequest/{crp['id']}"})
    [crp_obs] = resources(obs, "Observation")
    assert crp_obs["valueQuantity"]["value"] == 27

    # Delivered to the EHR in the form it takes (held for pull), linked to the orders.
    status, pulled, _ = await ehr.get("/fhir/Bundle", params={"destination": "ehr-pull"})
    assert status == 200
    delivered = [e["resource"] for e in pulled["entry"]]
    assert len(delivered) == 2
    based_on = {b["reference"] for bundle in delivered for r in resources(bundle, "DiagnosticReport")
                for b in r["basedOn"] if b.get("reference", "").startswith("ServiceRequest/")}
    assert {f"ServiceRequest/{k['id']}", f"ServiceRequest/{crp['id']}"} <= based_on

    # Every write and read of patient data was audited.
    actions = {r["action"] for r in await gw.pool.fetch("SELECT DISTINCT action FROM audit_log")}
    assert {"orders.create", "specimens.claim", "specimens.receive", "results.create",
            "ServiceRequest.read", "DiagnosticReport.read", "Observation.read"} <= actions


def resources_of_response(resp: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in resp["entry"] if e.get("resource", {}).get("resourceType") == rtype]


async def test_unsolicited_result_is_accepted_and_flagged(fhir_gw):
    gw, c = fhir_gw
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01("POC-NOORDER")])
    assert field(ack, "MSA", 1) == "AA"

    async def linked():
        return await gw.pool.fetchval("SELECT count(*) FROM order_result_link WHERE unsolicited") == 1
    await _until(linked)
    verdict = await gw.pool.fetchval("SELECT verdict::text FROM message WHERE control_id = 'POC-NOORDER'")
    assert "ORDER-UNSOLICITED" in verdict
    # Nobody ordered it: no EHR sees it, nothing is delivered to an EHR.
    status, reports, _ = await c["ehr"].get("/fhir/DiagnosticReport")
    assert status == 200 and not reports.get("entry")
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox WHERE destination = 'ehr-pull'") == 0


async def test_revoked_result_revokes_the_order(fhir_gw):
    gw, c = fhir_gw
    _, resp, _ = await c["ehr"].post("/fhir", mixed_order(poc_placer="ORD-R"))
    k = next(r for r in resources_of_response(resp, "ServiceRequest")
             if r["code"]["coding"][0]["code"] == "NPU03230")
    status, _, _ = await c["lis"].post("/fhir", lab_result(k["id"], status="cancelled"))
    assert status == 200
    _, sr, _ = await c["ehr"].get(f"/fhir/ServiceRequest/{k['id']}")
    assert sr["status"] == "revoked"


async def test_result_pushed_to_an_ehr_that_takes_oru_over_mllp(gateway_factory):
    """An EHR whose result delivery is MLLP gets the POC result as ORU^R01."""
    from fhirkit import Client, order_config
    from gateway import tokens
    from support import MllpReceiver
    receiver = await MllpReceiver().start()
    cfg = order_config()
    cfg["destinations"].append({"name": "ehr-mllp", "type": "mllp", "system": "ehr", "host": "127.0.0.1",
                                "port": receiver.port, "max_attempts": 3, "backoff_initial_s": 0.05,
                                "backoff_max_s": 0.2, "ack_timeout_s": 2.0})
    cfg["orders"]["result_delivery"] = [{"system": "ehr", "destination": "ehr-mllp"}]
    gw = await gateway_factory(cfg)
    async with gw.pool.acquire() as conn:
        ehr = Client(f"http://127.0.0.1:{gw.http_port}", (await tokens.create(conn, "ehr"))[1])
    try:
        _, resp, _ = await ehr.post("/fhir", mixed_order(poc_placer="ORD-1"))
        crp = next(r for r in resources_of_response(resp, "ServiceRequest")
                   if r["code"]["coding"][0]["code"] == "NPU19748")
        [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01("POC-MLLP")])
        assert field(ack, "MSA", 1) == "AA"
        await receiver.wait_for(1)
        _, sr, _ = await ehr.get(f"/fhir/ServiceRequest/{crp['id']}")
        assert sr["status"] == "completed"
    finally:
        await ehr.close()
        await receiver.stop()
    [msg] = receiver.messages
    assert field(msg, "MSH", 9).startswith("ORU^R01")
    assert "NPU19748" in msg.decode() and "ORD-1" in msg.decode()
