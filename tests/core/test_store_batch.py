"""MessageWriter stores a group commit as one statement (migration 0013).

A batch that mixes new messages, repeats of stored ones, a repeat inside the
batch itself, validator history rows, bundles the database indexes itself,
outbox rows and application ACKs comes back with one answer per record, in
order; and a batch that fails stores nothing at all.
"""
from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timezone

import asyncpg
import orjson
import pytest

from gateway import migrate
from gateway.store import HistoryRows, MessageRecord, MessageWriter, StoreUnavailable

T0 = datetime(2026, 3, 14, 9, 32, tzinfo=timezone.utc)
BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient",
                  "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216"}]}}]}


def record(control_id: str, raw: bytes = b"MSH|x", *, status: str = "accepted",
           dests=(("lis", "pending"),), history: HistoryRows | None = None,
           app_ack_to: str | None = None, bundle: dict | None = BUNDLE) -> MessageRecord:
    return MessageRecord(
        source="poc", protocol="mllp", peer="127.0.0.1", message_type="ORU^R01",
        control_id=control_id, sha256=hashlib.sha256(raw).digest(), raw=raw,
        bundle_json=orjson.dumps(bundle).decode() if bundle is not None else None,
        verdict_json="[]", status=status, ack=b"ACK-" + control_id.encode(), received_at=T0,
        destinations=list(dests), history=history, app_ack_to=app_ack_to)


@pytest.fixture
async def pool(db_url):
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate.apply(conn)
    yield pool
    await pool.close()


async def test_a_mixed_batch_gets_one_answer_per_record(pool):
    writer = MessageWriter(pool, writers=1)
    try:
        [first] = await asyncio.gather(writer.write(record("A")))
        kpot = HistoryRows("pk1", results=[("NPU03230", T0, 4.1, "mmol/L")], orders=[("NPU03230", T0)])
        batch = [
            record("B", history=kpot, app_ack_to="ehr-acks"),   # new, with validator history
            record("A"),                                         # repeat of a stored one
            record("C", dests=(("lis", "pending"), ("ehr-pull", "held"))),   # new, indexed by the db
            record("C"),                                         # repeat inside this batch
            record("A", raw=b"MSH|other"),                       # same control id, other bytes
            record("D", status="rejected", dests=()),            # rejected: no history, no outbox
        ]
        results = await writer._write_batch(batch)
    finally:
        await writer.close()

    b, a_again, c, c_again, a_other, d = results
    assert not b.duplicate and not c.duplicate and not d.duplicate
    assert len({first.message_id, b.message_id, c.message_id, d.message_id}) == 4
    assert (a_again.duplicate, a_again.same_content, a_again.message_id, a_again.stored_ack) == \
        (True, True, first.message_id, b"ACK-A")
    assert (c_again.duplicate, c_again.same_content, c_again.message_id) == (True, True, c.message_id)
    assert (a_other.duplicate, a_other.same_content) == (True, False)

    dup = dict(await pool.fetch("SELECT control_id, duplicates FROM message"))
    assert dup == {"A": 1, "B": 0, "C": 1, "D": 0}
    outbox = [tuple(r) for r in await pool.fetch(
        "SELECT message_id, destination, state, kind FROM outbox ORDER BY id")]
    assert outbox == [(first.message_id, "lis", "pending", "message"),
                      (b.message_id, "lis", "pending", "message"),
                      (b.message_id, "ehr-acks", "pending", "app_ack"),
                      (c.message_id, "lis", "pending", "message"),
                      (c.message_id, "ehr-pull", "held", "message")]
    assert [tuple(r) for r in await pool.fetch(
        "SELECT patient_key, code, value, message_id FROM validation_result")] == \
        [("pk1", "NPU03230", 4.1, b.message_id)]
    assert [tuple(r) for r in await pool.fetch(
        "SELECT patient_key, code, message_id FROM validation_order")] == \
        [("pk1", "NPU03230", b.message_id)]
    # the audit trigger saw every stored message, patient from the bundle
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'message.receive' AND patient = '13116900216'")
    assert audited == 4


async def test_a_failing_batch_stores_nothing(pool):
    writer = MessageWriter(pool, writers=1)
    try:
        good = record("G1")
        bad = record("G2")
        bad.bundle_json = '{"not json'                   # the database refuses the whole batch
        futures = [asyncio.ensure_future(writer.write(r)) for r in (good, bad)]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await writer.close()
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    for table in ("message", "outbox", "validation_result", "audit_log"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_wakes_each_destination_with_pending_rows_once(pool, db_url):
    heard: list[str] = []
    listener = await asyncpg.connect(db_url)
    await listener.add_listener("labgate_outbox", lambda *args: heard.append(args[3]))
    writer = MessageWriter(pool, writers=1)
    try:
        await writer._write_batch([record("N1"), record("N2"),
                                   record("N3", dests=(("ehr-pull", "held"),))])
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    finally:
        await writer.close()
        await listener.close()
    assert heard == ["lis"]


async def test_bundles_are_not_stored_pglz_compressed(pool):
    """Migration 0015: lz4 where the server has it, else out of line uncompressed
    (pglz was a quarter of the store's PostgreSQL CPU)."""
    big = {"resourceType": "Bundle", "type": "collection",
           "entry": [{"resource": {"resourceType": "Observation", "id": f"o{i}",
                                   "valueQuantity": {"value": i, "unit": "mg/L"}}} for i in range(200)]}
    writer = MessageWriter(pool, writers=1)
    try:
        [stored] = await writer._write_batch([record("BIG", bundle=big)])
    finally:
        await writer.close()
    storage, compression = await pool.fetchrow(
        "SELECT attstorage::text, attcompression::text FROM pg_attribute"
        " WHERE attrelid = 'message'::regclass AND attname = 'bundle'")
    method, size, back = await pool.fetchrow(
        "SELECT pg_column_compression(bundle), pg_column_size(bundle), bundle::text FROM message"
        " WHERE id = $1", stored.message_id)
    assert orjson.loads(back) == big
    assert (storage, compression) in (("e", ""), ("x", "l"))
    assert method == ("lz4" if compression == "l" else None)
    if method is None:   # out of line and whole: the stored datum is as large as the jsonb
        assert size >= len(orjson.dumps(big)) * 0.9
