"""The gateway end to end: real MLLP sockets, real PostgreSQL, real HTTP."""
from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from support import (MllpReceiver, base_config, field, free_port, mllp_exchange, oru_r01,
                     segments)


async def _send(gw, messages):
    port = gw.listeners["mllp-in"].port
    return await mllp_exchange("127.0.0.1", port, messages)


async def _token(gw, system):
    from gateway import tokens
    async with gw.pool.acquire() as conn:
        return (await tokens.create(conn, system))[1]


async def _wait_state(pool, state, n, timeout=20.0):
    async def poll():
        while True:
            got = await pool.fetchval("SELECT count(*) FROM outbox WHERE state = $1", state)
            if got >= n:
                return got
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(poll(), timeout)


async def test_oru_r01_is_acked_stored_and_delivered(gateway_factory):
    receiver = await MllpReceiver().start()
    gw = await gateway_factory(base_config(dest_port=receiver.port))
    [ack] = await _send(gw, [oru_r01("CTRL-1")])

    assert field(ack, "MSA", 1) == "AA"
    assert field(ack, "MSA", 2) == "CTRL-1"
    row = await gw.pool.fetchrow("SELECT * FROM message WHERE control_id = 'CTRL-1'")
    assert row["status"] == "accepted" and row["source"] == "poc"
    bundle = orjson.loads(row["bundle"])
    Bundle.model_validate(bundle)  # the stored canonical form is valid FHIR R4
    types = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert "Observation" in types and "Patient" in types and "DiagnosticReport" in types
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert obs["valueQuantity"]["value"] == 27 and obs["valueQuantity"]["code"] == "mg/L"

    await receiver.wait_for(1)
    delivered = receiver.messages[0]
    assert field(delivered, "MSH", 9).startswith("ORU^R01")
    assert "NPU19748" in segments(delivered, "OBX")[0]
    await _wait_state(gw.pool, "delivered", 1)
    await receiver.stop()


async def test_malformed_message_gets_negative_ack_and_is_stored_rejected(gateway_factory):
    gw = await gateway_factory(base_config())
    no_pid = b"MSH|^~\\&|POCDM|X|LABGW|Y|20250314093200||ORU^R01^ORU_R01|BAD-1|P|2.5.1\rOBX|1|NM|X||1\r"
    garbage = b"this is not HL7 at all"
    acks = await _send(gw, [no_pid, garbage])

    assert field(acks[0], "MSA", 1) in ("AE", "AR")
    assert field(acks[0], "MSA", 2) == "BAD-1"
    assert segments(acks[0], "ERR"), "a negative ACK names the problem in ERR"
    assert field(acks[1], "MSA", 1) == "AR"
    assert segments(acks[1], "ERR")
    rows = await gw.pool.fetch("SELECT status, verdict, raw FROM message ORDER BY id")
    assert [r["status"] for r in rows] == ["rejected", "rejected"]
    assert bytes(rows[1]["raw"]) == garbage      # nothing lost: the raw bytes are kept
    assert all(orjson.loads(r["verdict"]) for r in rows)
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_duplicate_control_id_is_not_processed_twice(gateway_factory):
    gw = await gateway_factory(base_config())
    msg = oru_r01("DUP-1")
    first, second = await _send(gw, [msg, msg])
    assert field(first, "MSA", 1) == field(second, "MSA", 1) == "AA"
    assert first == second                        # the stored ACK is replayed
    assert await gw.pool.fetchval("SELECT count(*) FROM message") == 1
    assert await gw.pool.fetchval("SELECT duplicates FROM message") == 1
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox") == 1

    changed = oru_r01("DUP-1", value="99")       # same control id, other content
    [third] = await _send(gw, [changed])
    assert field(third, "MSA", 1) == "AR"
    assert "DUPLICATE-CONTROL-ID-CONFLICT" in segments(third, "ERR")[0]
    rows = await gw.pool.fetch("SELECT status, duplicate_of FROM message ORDER BY id")
    assert rows[1]["status"] == "rejected" and rows[1]["duplicate_of"] is not None
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_duplicates_on_concurrent_connections_share_one_row(gateway_factory):
    gw = await gateway_factory(base_config())
    msg = oru_r01("RACE-1")
    port = gw.listeners["mllp-in"].port
    replies = await asyncio.gather(*[mllp_exchange("127.0.0.1", port, [msg]) for _ in range(8)])
    assert all(field(r[0], "MSA", 1) == "AA" for r in replies)
    assert await gw.pool.fetchval("SELECT count(*) FROM message") == 1
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await gw.pool.fetchval("SELECT duplicates FROM message") == 7   # every copy counted


async def test_destination_answering_ae_is_retried_then_dead_lettered(gateway_factory):
    receiver = await MllpReceiver(ack_code="AE").start()
    gw = await gateway_factory(base_config(dest_port=receiver.port, max_attempts=3, pull=False))
    [ack] = await _send(gw, [oru_r01("AE-1")])
    assert field(ack, "MSA", 1) == "AA"
    await _wait_state(gw.pool, "dead", 1)
    assert len(receiver.messages) == 3           # first try + 2 retries, then dead
    row = await gw.pool.fetchrow("SELECT attempts, last_error FROM outbox")
    assert row["attempts"] == 3 and "AE" in row["last_error"]
    outcomes = [r["outcome"] for r in await gw.pool.fetch(
        "SELECT outcome FROM delivery_attempt ORDER BY id")]
    assert outcomes == ["rejected", "rejected", "dead"]
    await receiver.stop()


async def test_destination_down_at_first_gets_message_when_it_comes_up(gateway_factory):
    port = free_port()
    gw = await gateway_factory(base_config(dest_port=port, max_attempts=1000, pull=False))
    acks = await _send(gw, [oru_r01(f"DOWN-{i}") for i in range(3)])
    assert all(field(a, "MSA", 1) == "AA" for a in acks)
    await asyncio.sleep(0.5)                      # a few failed attempts happen
    failed = await gw.pool.fetchval("SELECT count(*) FROM delivery_attempt WHERE outcome <> 'delivered'")
    assert failed >= 1
    receiver = await MllpReceiver().start(port)
    await receiver.wait_for(3)
    await _wait_state(gw.pool, "delivered", 3)
    assert receiver.control_ids() == sorted(receiver.control_ids(), key=lambda c: int(c[2:]))
    assert len(set(receiver.control_ids())) == 3  # each once, in order
    await receiver.stop()


async def test_pull_destination_over_http(gateway_factory):
    gw = await gateway_factory(base_config())
    await _send(gw, [oru_r01("PULL-1"), oru_r01("PULL-2")])
    token = await _token(gw, "ehr")
    other = await _token(gw, "other-ehr")
    base = f"http://127.0.0.1:{gw.http_port}/fhir"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/Bundle", params={"destination": "ehr-pull"}) as r:
            assert r.status == 401
        async with s.get(f"{base}/Bundle", params={"destination": "ehr-pull"},
                         headers={"Authorization": f"Bearer {other}"}) as r:
            assert r.status == 403
            assert (await r.json())["resourceType"] == "OperationOutcome"
        hdr = {"Authorization": f"Bearer {token}"}
        async with s.get(f"{base}/Bundle", params={"destination": "ehr-pull", "_count": "1"},
                         headers=hdr) as r:
            assert r.status == 200
            page = await r.json()
        Bundle.model_validate(page)
        assert len(page["entry"]) == 1
        assert any(link["relation"] == "next" for link in page["link"])
        held_id = page["entry"][0]["resource"]["id"]
        async with s.post(f"{base}/Bundle/{held_id}/$taken", headers={"Authorization": f"Bearer {other}"}) as r:
            assert r.status == 403
        async with s.post(f"{base}/Bundle/{held_id}/$taken", headers=hdr) as r:
            assert r.status == 200
        async with s.get(f"{base}/Bundle", params={"destination": "ehr-pull"}, headers=hdr) as r:
            rest = await r.json()
        assert [e["resource"]["id"] for e in rest["entry"]] != [held_id]
        assert len(rest["entry"]) == 1
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'taken'") == 1


async def test_revoked_token_is_refused_at_once(gateway_factory):
    from gateway import tokens
    gw = await gateway_factory(base_config())
    async with gw.pool.acquire() as conn:
        tid, token = await tokens.create(conn, "ehr")
    url = f"http://127.0.0.1:{gw.http_port}/fhir/Bundle?destination=ehr-pull"
    hdr = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=hdr) as r:
            assert r.status == 200
        async with gw.pool.acquire() as conn:
            assert await tokens.revoke(conn, tid)
        async with s.get(url, headers=hdr) as r:
            assert r.status == 401
    stored = await gw.pool.fetchval("SELECT token_sha256 FROM api_token WHERE id = $1", tid)
    assert token.encode() not in bytes(stored)


async def test_health_ready_metrics_and_capability_statement(gateway_factory):
    gw = await gateway_factory(base_config())
    await _send(gw, [oru_r01("M-1"), b"garbage"])
    base = f"http://127.0.0.1:{gw.http_port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/healthz") as r:
            assert r.status == 200
        async with s.get(base + "/readyz") as r:
            assert r.status == 200 and (await r.json())["database"] == "ok"
        async with s.get(base + "/metrics") as r:
            text = await r.text()
        async with s.get(base + "/fhir/metadata") as r:
            cap = await r.json()
    assert 'labgate_messages_accepted_total{source="poc",type="ORU^R01"} 1.0' in text
    assert 'labgate_messages_rejected_total{source="poc",type="unknown"} 1.0' in text
    assert 'labgate_outbox_depth{destination="ehr-pull",state="held"} 1.0' in text
    CapabilityStatement.model_validate(cap)
    assert cap["fhirVersion"] == "4.0.1"
    assert [r["type"] for r in cap["rest"][0]["resource"]][0] == "Bundle"   # [fhir] adds order resources


async def test_readyz_fails_when_database_is_gone(gateway_factory, db_url, pg_server):
    gw = await gateway_factory(base_config())
    await gw.pool.close()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{gw.http_port}/readyz") as r:
            assert r.status == 503
    from gateway.store import create_pool
    gw.pool = await create_pool(db_url)   # so the fixture can stop it cleanly


async def test_peer_outside_allow_list_is_refused(gateway_factory):
    cfg = base_config()
    cfg["listeners"][0]["allow"] = ["10.99.0.0/16"]
    gw = await gateway_factory(cfg)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await _send(gw, [oru_r01("DENIED-1")])
    assert await gw.pool.fetchval("SELECT count(*) FROM message") == 0


async def test_migrations_are_idempotent(db_url):
    from gateway import migrate
    conns = [await asyncpg.connect(db_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*[migrate.apply(c) for c in conns])
        assert sorted(len(r) for r in results)[-1] == len(migrate.migration_files())
        assert sum(len(r) for r in results) == len(migrate.migration_files())
        assert await migrate.apply(conns[0]) == []
    finally:
        for c in conns:
            await c.close()


async def test_pull_is_audited_with_patient_and_audit_is_append_only(gateway_factory):
    gw = await gateway_factory(base_config())
    await _send(gw, [oru_r01("AUD-1")])
    token = await _token(gw, "ehr")
    lis = await _token(gw, "lis")
    url = f"http://127.0.0.1:{gw.http_port}/fhir/Bundle?destination=ehr-pull"
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers={"Authorization": f"Bearer {lis}"}) as r:
            assert r.status == 403          # a LIS may pull, but not the EHR's destination
        async with s.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
    row = await gw.pool.fetchrow("SELECT * FROM audit_log WHERE action = 'results.pull'")
    assert row["actor"] == "ehr" and row["patient"] == "13116900216" and row["outcome"] == "success"
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await gw.pool.execute(sql)
