"""Laboratory side: concurrent pulls and claims never hand out the same
referral twice; receipt records receivedTime and runs the stability check;
the shipment view lists what was collected and not yet received."""
from __future__ import annotations

import asyncio

from fhirkit import (AGE_EXT, POTASSIUM, codes_of, mixed_order, patient, resources, service_request,
                     specimen, transaction)


async def _referred(c, n: int) -> list[str]:
    """Post ``n`` potassium orders (referred to lis); their ServiceRequest ids."""
    ids = []
    for i in range(n):
        b = transaction(("urn:uuid:patient-1", patient()),
                        ("urn:uuid:sr", service_request(POTASSIUM, specimen="urn:uuid:sp")),
                        ("urn:uuid:sp", specimen(f"TUBE-{i}", request="urn:uuid:sr")))
        status, resp, _ = await c["ehr"].post("/fhir", b)
        assert status == 200
        ids += [e["resource"]["id"] for e in resp["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    return ids


async def test_concurrent_claim_operations_take_disjoint_sets(fhir_gw):
    gw, c = fhir_gw
    ids = await _referred(c, 12)
    from fhirkit import Client
    base = c["lis"].base
    second = Client(base, c["lis"].token)     # a second LIS client process, same system
    try:
        async def drain(client):
            got = []
            while True:
                status, page, _ = await client.post("/fhir/ServiceRequest/$claim", params={"_count": "3"})
                assert status == 200
                srs = [e["resource"]["id"] for e in page.get("entry", [])
                       if e["search"]["mode"] == "match"]
                if not srs:
                    return got
                tasks = resources(page, "Task")
                assert {t["focus"]["reference"] for t in tasks} == {f"ServiceRequest/{i}" for i in srs}
                assert len(resources(page, "Specimen")) == len(srs)
                got += srs
        a, b = await asyncio.gather(drain(c["lis"]), drain(second))
    finally:
        await second.close()
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(ids)
    assert await gw.pool.fetchval("SELECT count(*) FROM fhir_task") == 12


async def test_concurrent_task_posts_for_one_referral_one_wins(fhir_gw):
    gw, c = fhir_gw
    [sr_id] = await _referred(c, 1)
    task = {"resourceType": "Task", "status": "accepted", "intent": "order",
            "focus": {"reference": f"ServiceRequest/{sr_id}"}}
    results = await asyncio.gather(*[c["lis"].post("/fhir/Task", task) for _ in range(8)])
    statuses = sorted(r[0] for r in results)
    assert statuses == [201] + [409] * 7
    # A claimed referral is no longer offered as unclaimed.
    _, page, _ = await c["lis"].get("/fhir/ServiceRequest", params={"status": "active", "claimed": "false"})
    assert not page.get("entry")


async def test_too_old_at_receipt_is_flagged_and_held(fhir_gw):
    gw, c = fhir_gw
    _, resp, _ = await c["ehr"].post("/fhir", mixed_order(poc_placer="OLD-1", minutes_ago=300))
    k = next(e["resource"] for e in resp["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
             and e["resource"]["code"]["coding"][0]["code"] == "NPU03230")
    spec_id = k["specimen"][0]["reference"].split("/")[1]
    status, oo, _ = await c["lis"].post(f"/fhir/Specimen/{spec_id}/$receive",
                                         headers={"Prefer": "return=OperationOutcome"})
    assert status == 200 and "SPECIMEN-TOO-OLD" in codes_of(oo)
    _, spec, _ = await c["lis"].get(f"/fhir/Specimen/{spec_id}")
    assert spec["receivedTime"] and spec["condition"][0]["text"].startswith("Too old")
    assert any("NPU03230" in n["text"] for n in spec["note"])
    _, sr, _ = await c["ehr"].get(f"/fhir/ServiceRequest/{k['id']}")
    assert sr["status"] == "on-hold"
    assert await gw.pool.fetchval("SELECT on_hold FROM fhir_specimen WHERE id = $1::uuid", spec_id)


async def test_receipt_time_given_by_the_laboratory(fhir_gw):
    gw, c = fhir_gw
    [sr_id] = await _referred(c, 1)
    _, sr, _ = await c["lis"].get(f"/fhir/ServiceRequest/{sr_id}")
    spec_id = sr["specimen"][0]["reference"].split("/")[1]
    params = {"resourceType": "Parameters", "parameter": [{"name": "receivedTime",
                                                            "valueDateTime": "2030-01-01T10:00:00Z"}]}
    status, spec, _ = await c["lis"].post(f"/fhir/Specimen/{spec_id}/$receive", params)
    assert status == 200 and spec["receivedTime"].startswith("2030-01-01T10:00:00")
    assert spec["condition"][0]["text"].startswith("Too old")   # years after collection: held


async def test_shipment_view_lists_unreceived_specimens_with_age(fhir_gw):
    gw, c = fhir_gw
    await c["ehr"].post("/fhir", mixed_order(poc_placer="SHIP-1", minutes_ago=45))
    status, view, _ = await c["ehr"].get("/fhir/Specimen", params={"site": "legekontor-1", "received": "false"})
    assert status == 200
    specs = resources(view, "Specimen")
    assert len(specs) == 2
    ages = [next(e for e in s["extension"] if e["url"] == AGE_EXT)["valueQuantity"] for s in specs]
    assert all(44 <= a["value"] <= 60 and a["code"] == "min" for a in ages)
    # The laboratory receives its tube: it leaves the view.
    k_spec = next(s for s in specs if s["identifier"][0]["value"].startswith("TUBE-K"))
    status, _, _ = await c["lis"].post(f"/fhir/Specimen/{k_spec['id']}/$receive")
    assert status == 200
    _, view, _ = await c["ehr"].get("/fhir/Specimen", params={"site": "legekontor-1", "received": "false"})
    assert [s["id"] for s in resources(view, "Specimen")] != [] and \
        k_spec["id"] not in [s["id"] for s in resources(view, "Specimen")]
    # Another site, another EHR: nothing.
    _, other_site, _ = await c["ehr"].get("/fhir/Specimen", params={"site": "elsewhere", "received": "false"})
    _, other_ehr, _ = await c["other-ehr"].get("/fhir/Specimen", params={"received": "false"})
    assert not other_site.get("entry") and not other_ehr.get("entry")
    # The laboratory's own view shows only tubes referred to it.
    _, lab_view, _ = await c["lis"].get("/fhir/Specimen", params={"received": "false"})
    assert not lab_view.get("entry")


async def test_search_pages_with_next_links(fhir_gw):
    gw, c = fhir_gw
    ids = await _referred(c, 5)
    seen, url, pages = [], "/fhir/ServiceRequest?status=active&_count=2", 0
    while url:
        status, page, _ = await c["lis"].get(url)
        assert status == 200
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((l["url"] for l in page["link"] if l["relation"] == "next"), None)
        pages += 1
    assert seen == ids and pages == 3
