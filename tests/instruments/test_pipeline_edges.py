"""The instrument pipeline against the real database: hostile input,
duplicates, registry sync and the orders interface."""
from __future__ import annotations

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from adapters.astm.scenarios import crp_patient, crp_qc
from gateway.instruments.orders import open_orders_for

from inst_support import ASTM_SERIAL, instrument_config, oslo_now, verdicts


@pytest.mark.parametrize("raw,code", [
    (b"", "ASTM-PARSE-ERROR"), (b"\x00\xff" * 100, "ASTM-PARSE-ERROR"),
    (b"L|1|N\r", "ASTM-PARSE-ERROR"), (b"P|1|x\rO|1\r", "ASTM-PARSE-ERROR"),
    (b"H" + b"|" * 5000 + b"\r", "INSTRUMENT-UNKNOWN"),
    (b"H|\\^&|||CRP-POC^1.2^AF2-000987\rP|1|13116900216\rO|1|S1||^^^CRP\rR|1|^^^CRP|"
     + b"9" * 100_000 + b"|mg/L\rL|1|N\r", "ASTM-VALUE-NOT-NUMERIC"),
    ("H|\\^&|||CRP-POC^1.2^ZZ\u00e6\u00f8\rP|1|\u00e6\u00f8\u00e5\rL|1|N\r".encode("latin-1"),
     "INSTRUMENT-UNKNOWN"),
])
async def test_hostile_astm_messages_are_stored_rejected_never_raised(gateway_factory, raw, code):
    gw = await gateway_factory(instrument_config())
    reply = await gw.instruments.pipeline.astm_message(raw, "poc-astm", "127.0.0.1:1")
    assert reply is None
    ((_, status, codes),) = await verdicts(gw)
    assert status == "rejected" and code in codes


async def test_the_same_astm_message_twice_is_stored_once(gateway_factory):
    gw = await gateway_factory(instrument_config())
    now = oslo_now()
    pipe = gw.instruments.pipeline
    for raw in (crp_qc(now), crp_patient(now), crp_patient(now)):
        await pipe.astm_message(raw, "poc-astm", "127.0.0.1:1")
    assert await verdicts(gw) == [("ASTM-QC", "accepted", []), ("ASTM", "accepted", [])]
    assert await gw.pool.fetchval("SELECT duplicates FROM message WHERE message_type = 'ASTM'") == 1
    await pipe.astm_message(crp_qc(now), "poc-astm", "127.0.0.1:1")
    assert await gw.pool.fetchval("SELECT count(*) FROM qc_result") == 1


async def test_instruments_dropped_from_configuration_are_disabled_not_forgotten(gateway_factory):
    gw1 = await gateway_factory(instrument_config())
    now = oslo_now()
    await gw1.instruments.pipeline.astm_message(crp_qc(now), "poc-astm", "127.0.0.1:1")
    cfg = instrument_config()
    cfg["instruments"] = cfg["instruments"][1:]
    cfg["operators"] = cfg["operators"][1:]
    gw2 = await gateway_factory(cfg)
    assert await gw2.pool.fetchval("SELECT enabled FROM instrument WHERE serial = $1", ASTM_SERIAL) is False
    assert await gw2.pool.fetchval("SELECT count(*) FROM instrument_operator") == 1
    await gw2.instruments.pipeline.astm_message(crp_patient(now), "poc-astm", "127.0.0.1:1")
    assert (await verdicts(gw2))[-1] == ("ASTM", "rejected", ["INSTRUMENT-DISABLED"])
    # QC history stays with the serial number.
    assert await gw2.pool.fetchval("SELECT count(*) FROM qc_result WHERE instrument = $1", ASTM_SERIAL) == 1


async def test_open_orders_with_no_orders_stored_is_empty(db_url):
    from gateway import migrate
    conn = await asyncpg.connect(db_url)
    try:
        await migrate.apply(conn)             # the gateway always migrates before it serves
        assert await open_orders_for(conn, ["LID1"], ["13116900216"]) == []
    finally:
        await conn.close()


async def test_open_orders_by_specimen_then_by_patient(gateway_factory):
    import uuid
    gw = await gateway_factory(instrument_config())
    ids = {}
    for key, status, code, routing in [("a", "active", "NPU19748", "poc"), ("b", "active", "NPU27300", "poc"),
                                       ("c", "completed", "NPU01685", "poc"),
                                       ("d", "active", "NPU02192", "referred")]:
        ids[key] = uuid.uuid4()
        await gw.pool.execute(
            "INSERT INTO fhir_service_request (id, requester_system, requisition_key, patient_ident,"
            " routing, status, code, resource) VALUES ($1, 'ehr', $2, '13116900216', $3, $4, $5,"
            " '{}'::jsonb)", ids[key], f"x|{key}", routing, status, code)
    await gw.pool.execute(
        "INSERT INTO fhir_specimen (id, ident_values, service_request_ids, requester_system, resource)"
        " VALUES ($1, ARRAY['LID9'], $2::uuid[], 'ehr', '{}'::jsonb)",
        uuid.uuid4(), [ids["a"], ids["c"], ids["d"]])
    assert await open_orders_for(gw.pool, ["LID9"], []) == [
        {"specimen_id": "LID9", "patient_id": "13116900216", "tests": ["NPU19748"]}]
    by_patient = await open_orders_for(gw.pool, ["NOPE"], ["13116900216"])
    assert sorted(t for o in by_patient for t in o["tests"]) == ["NPU19748", "NPU27300"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_poct_mapping_of_random_bytes_never_raises(data):
    from mappings.poct1a.to_fhir import poct_to_bundle
    bundle, issues, qc = poct_to_bundle(data, code_map={})
    assert bundle["resourceType"] == "Bundle" and isinstance(issues, list)


@pytest.mark.parametrize("text", ["9" * 41, "9" * 100_000, "1." + "0" * 5000])
def test_absurdly_long_numbers_are_not_numbers(text):
    from mappings.values import parse_number
    assert parse_number(text) is None
    assert parse_number("27") == (None, 27) and parse_number("<5,5") == ("<", 5.5)


async def test_qc_lock_survives_a_restart(gateway_factory):
    from datetime import timedelta
    from gateway.instruments import read_api
    gw1 = await gateway_factory(instrument_config())
    now = oslo_now()
    failing = crp_qc(now - timedelta(minutes=5)).replace(b"|27|mg/L|", b"|12|mg/L|")
    await gw1.instruments.pipeline.astm_message(failing, "poc-astm", "127.0.0.1:1")
    gw2 = await gateway_factory(instrument_config())       # same database, fresh caches
    inst = await read_api.instrument(gw2.pool, gw2.instruments.registry, ASTM_SERIAL)
    assert inst["analyses"][0]["state"] == "locked"
    await gw2.instruments.pipeline.astm_message(crp_patient(now), "poc-astm", "127.0.0.1:1")
    assert (await verdicts(gw2))[-1] == ("ASTM", "rejected", ["QC-LOCKOUT"])
