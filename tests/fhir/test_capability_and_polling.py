"""The CapabilityStatement advertises what is served (and it is served), and
_lastUpdated polling returns only what changed."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from fhirkit import lab_result, mixed_order, resources


async def test_every_advertised_search_and_create_is_served(fhir_gw):
    gw, c = fhir_gw
    status, cap, _ = await c["ehr"].get("/fhir/metadata")
    assert status == 200
    served = {r["type"]: {i["code"] for i in r["interaction"]} for r in cap["rest"][0]["resource"]}
    for rtype in ("ServiceRequest", "Specimen", "Task", "DiagnosticReport", "Observation"):
        assert rtype in served
    for rtype, interactions in served.items():
        if "search-type" in interactions:
            client = c["lis"] if rtype in ("Bundle",) else c["ehr"]
            params = {"received": "false"} if rtype == "Specimen" else (
                {"destination": "ehr-pull"} if rtype == "Bundle" else None)
            status, body, _ = await client.get(f"/fhir/{rtype}", params=params)
            assert status in (200, 403), (rtype, status)   # served; never 404/405
        if "read" in interactions:
            status, body, _ = await c["ehr"].get(f"/fhir/{rtype}/00000000-0000-0000-0000-000000000000")
            assert status == 404 and body["resourceType"] == "OperationOutcome"


async def test_last_updated_polling(fhir_gw):
    gw, c = fhir_gw
    _, resp, _ = await c["ehr"].post("/fhir", mixed_order(poc_placer="POLL-1"))
    k = next(e["resource"] for e in resp["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
             and e["resource"]["code"]["coding"][0]["code"] == "NPU03230")
    await asyncio.sleep(0.01)
    before = datetime.now(timezone.utc).isoformat()
    await c["lis"].post("/fhir", lab_result(k["id"]))
    after = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    _, new, _ = await c["ehr"].get("/fhir/DiagnosticReport", params={"_lastUpdated": f"gt{before}"})
    _, none, _ = await c["ehr"].get("/fhir/DiagnosticReport", params={"_lastUpdated": f"gt{after}"})
    assert len(resources(new, "DiagnosticReport")) == 1 and not none.get("entry")
    _, changed, _ = await c["ehr"].get("/fhir/ServiceRequest", params={"_lastUpdated": f"ge{before}"})
    assert [r["id"] for r in resources(changed, "ServiceRequest")] == [k["id"]]   # completed just now
    status, bad, _ = await c["ehr"].get("/fhir/DiagnosticReport", params={"_lastUpdated": "gtyesterday"})
    assert status == 400 and bad["resourceType"] == "OperationOutcome"
