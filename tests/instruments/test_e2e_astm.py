"""ASTM instruments end to end: simulator -> real socket -> gateway -> store
-> EHR pull over HTTP; QC lockout and unlock; identity checks."""
from __future__ import annotations

from datetime import timedelta

from adapters.astm.scenarios import crp_patient, crp_qc
from gateway.instruments import read_api
from mappings import systems

from inst_support import (ASTM_SERIAL, astm_sim, instrument_config, oslo_now, pull, resources,
                          verdicts)


def _crp_code(obs: dict) -> dict:
    return next(c for c in obs["code"]["coding"] if c["system"] == systems.NLK)


async def test_crp_over_astm_reaches_the_ehr_with_code_unit_device_and_operator(gateway_factory):
    gw = await gateway_factory(instrument_config())
    summary = await astm_sim(gw, "crp")
    assert summary["ok"], summary["transfers"]
    assert await verdicts(gw) == [("ASTM-QC", "accepted", []), ("ASTM", "accepted", []),
                                  ("ASTM-QUERY", "accepted", [])]
    (bundle,) = await pull(gw)
    (obs,) = resources(bundle, "Observation")
    assert _crp_code(obs)["code"] == "NPU19748"
    assert obs["valueQuantity"]["value"] == 27 and obs["valueQuantity"]["code"] == "mg/L"
    assert obs["performer"][0]["identifier"]["value"] == "OP017"
    device = next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == obs["device"]["reference"])
    assert device["identifier"][0]["value"] == ASTM_SERIAL
    # The QC run is a QC event, never a patient result.
    (qc,) = await read_api.qc_history(gw.pool, ASTM_SERIAL, "NPU19748")
    assert qc["result"] == "pass" and qc["value"] == 27 and qc["lot"] == "10012345"
    assert (qc["target_low"], qc["target_high"]) == (22, 34)
    (inst,) = [i for i in await read_api.list_instruments(gw.pool, gw.instruments.registry)
               if i["serial"] == ASTM_SERIAL]
    assert inst["analyses"][0]["state"] == "ok" and inst["last_seen"] is not None
    assert [o["operator_id"] for o in inst["operators"]] == ["OP017"]


async def test_failed_qc_locks_patient_results_and_a_passed_qc_unlocks(gateway_factory):
    gw = await gateway_factory(instrument_config())
    now = oslo_now()
    failing = crp_qc(now - timedelta(minutes=10)).replace(b"|27|mg/L|22-34|", b"|41|mg/L|22-34|")
    sent = await astm_sim(gw, "crp", now=now, plan=[[failing], [crp_patient(now)]])
    assert sent["ok"], sent["transfers"]
    assert await verdicts(gw) == [("ASTM-QC", "accepted", []), ("ASTM", "rejected", ["QC-LOCKOUT"])]
    assert await pull(gw) == []
    state = (await read_api.instrument(gw.pool, gw.instruments.registry, ASTM_SERIAL))["analyses"][0]
    assert state["state"] == "locked"
    later = now + timedelta(minutes=5)
    sent = await astm_sim(gw, "crp", now=later, plan=[[crp_qc(later)], [crp_patient(later)]])
    assert sent["ok"]
    assert [v[1] for v in (await verdicts(gw))[2:]] == ["accepted", "accepted"]
    state = (await read_api.instrument(gw.pool, gw.instruments.registry, ASTM_SERIAL))["analyses"][0]
    assert state["state"] == "ok"
    history = await read_api.qc_history(gw.pool, ASTM_SERIAL)
    assert [h["result"] for h in history] == ["pass", "fail"]
    assert len(await pull(gw)) == 1


async def test_unknown_instrument_is_rejected_with_its_own_code(gateway_factory):
    gw = await gateway_factory(instrument_config())
    now = oslo_now()
    stranger = crp_patient(now).replace(b"AF2-000987", b"ZZ-UNKNOWN")
    sent = await astm_sim(gw, "crp", now=now, plan=[[stranger]])
    assert sent["ok"]                  # E1381 acknowledges frames, not content
    assert await verdicts(gw) == [("ASTM", "rejected", ["INSTRUMENT-UNKNOWN"])]
    assert await pull(gw) == []


async def test_an_instrument_cannot_post_for_another_systems_serial(gateway_factory):
    gw = await gateway_factory(instrument_config())
    now = oslo_now()
    # The astm-other listener is bound to system poc-other; AF2-000987 belongs to poc-astm.
    sent = await astm_sim(gw, "crp", listener="astm-other", now=now,
                          plan=[[crp_qc(now)], [crp_patient(now)]])
    assert sent["ok"]
    got = await verdicts(gw)
    assert got and all(status == "rejected" and codes == ["INSTRUMENT-NOT-PERMITTED"]
                       for _, status, codes in got)
    assert await gw.pool.fetchval("SELECT count(*) FROM qc_result") == 0
    # A registered serial of its own, naming the other system's device in R-14, is refused too.
    mixed = crp_patient(now).replace(b"CRP-POC^1.2^AF2-000987", b"HBA1C-POC^4.4.3^SN12345678")
    await astm_sim(gw, "crp", listener="astm-other", now=now, plan=[[mixed]])
    assert "INSTRUMENT-NOT-PERMITTED" in (await verdicts(gw))[-1][2]


async def test_analysis_the_instrument_is_not_registered_for_is_rejected(gateway_factory):
    cfg = instrument_config()
    cfg["instruments"][0] = {**cfg["instruments"][0], "analyses": ["NPU27300"]}
    gw = await gateway_factory(cfg)
    await astm_sim(gw, "crp")
    codes = {c for _, _, cs in await verdicts(gw) for c in cs}
    assert "INSTRUMENT-ANALYSIS-NOT-REGISTERED" in codes
    assert await pull(gw) == []


async def test_host_query_is_answered_from_open_orders(gateway_factory):
    import uuid
    gw = await gateway_factory(instrument_config())
    sr = uuid.uuid4()
    await gw.pool.execute(
        "INSERT INTO fhir_service_request (id, requester_system, requisition_key, patient_ident,"
        " routing, status, code, resource) VALUES ($1, 'ehr', 'x|1', '13116900216', 'poc',"
        " 'active', 'NPU19748', '{}'::jsonb)", sr)
    await gw.pool.execute(
        "INSERT INTO fhir_specimen (id, ident_values, service_request_ids, requester_system,"
        " resource) VALUES ($1, ARRAY['LID0004712'], ARRAY[$2::uuid], 'ehr', '{}'::jsonb)",
        uuid.uuid4(), sr)
    summary = await astm_sim(gw, "crp")
    (answer,) = summary["answers"]
    lines = answer.split("\r")
    order = next(line for line in lines if line.startswith("O|"))
    assert "LID0004712" in order and "^^^CRP" in order and order.endswith("|Q")
    assert any(line.startswith("P|1|13116900216") for line in lines)
