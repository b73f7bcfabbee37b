"""The database floor: raw asyncpg durable inserts of the rows the gateway
writes per message (the message row with raw bytes, FHIR bundle, verdict and
ACK, plus two outbox rows), with nothing else in the way.

``single``: one transaction per message (from ``conns`` connections).
``batch``: 100 messages per transaction, set-based (what group commit buys).
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime, timezone

import asyncpg
import orjson

from bench.loadgen import LoadResult
from bench.messages import oru_r01

_ACK = b"MSH|^~\\&|LABGATE|BENCH|POCDM|LEGEVAKT-XBY|20250314093200||ACK^R01^ACK|LG1|P|2.5.1\rMSA|AA|X\r"
_VERDICT = '[{"severity":"information","code":"HL7-SEGMENT-NOT-MAPPED","location":"PV1[1]"}]'

_MSG = """INSERT INTO message (source, protocol, peer, message_type, control_id, content_sha256,
                     raw, bundle, verdict, status, ack, received_at)
VALUES ('poc', 'mllp', '127.0.0.1', 'ORU^R01', $1, $2, $3, $4::jsonb, $5::jsonb, 'accepted', $6, $7)
RETURNING id"""
_OUT = """INSERT INTO outbox (message_id, destination, state)
VALUES ($1, 'lis-mllp', 'pending'), ($1, 'ehr-pull', 'held')"""
_MSG_BATCH = """WITH ins AS (
  INSERT INTO message (source, protocol, peer, message_type, control_id, content_sha256,
                       raw, bundle, verdict, status, ack, received_at)
  SELECT 'poc', 'mllp', '127.0.0.1', 'ORU^R01', c, s, r, b::jsonb, $4::jsonb, 'accepted', $5, now()
  FROM unnest($1::text[], $2::bytea[], $3::bytea[], $6::text[]) AS t(c, s, r, b)
  RETURNING id)
INSERT INTO outbox (message_id, destination, state)
SELECT id, d, st FROM ins, (VALUES ('lis-mllp', 'pending'), ('ehr-pull', 'held')) AS v(d, st)"""


def _bundle_json(raw: bytes) -> str:
    from mappings.hl7v2.parser import parse
    from mappings.hl7v2.to_fhir import to_bundle
    return orjson.dumps(to_bundle(parse(raw))[0]).decode()


_SAMPLE = oru_r01("SIZE", 1)
ROW_BYTES = len(_SAMPLE) + len(_bundle_json(_SAMPLE)) + len(_ACK) + len(_VERDICT)


def _rows(n: int, prefix: str) -> list[tuple]:
    out = []
    for i in range(n):
        raw = oru_r01(f"{prefix}{i}", i)
        out.append((f"{prefix}{i}", hashlib.sha256(raw).digest(), raw, _bundle_json(raw)))
    return out


async def _schema(url: str) -> None:
    from gateway import migrate
    conn = await asyncpg.connect(url)
    try:
        await migrate.apply(conn)
        await conn.execute("TRUNCATE delivery_attempt, outbox, message CASCADE")
    finally:
        await conn.close()


async def inserts(url: str, *, mode: str, conns: int, n: int, cpu=lambda: 0.0) -> tuple[LoadResult, float]:
    """Insert ``n`` messages' rows; latencies are per commit (per message).

    Returns the result and the database CPU seconds it took (``cpu()`` is
    read while the connections are open, so their backends are counted)."""
    await _schema(url)
    prefix = f"F{mode}{conns}-"
    rows = _rows(n, prefix)
    res = LoadResult()
    pool = await asyncpg.create_pool(url, min_size=conns, max_size=conns)
    try:
        cpu0 = cpu()
        start = time.perf_counter()
        if mode == "single":
            it = iter(rows)

            async def worker():
                async with pool.acquire() as conn:
                    for ctrl, sha, raw, bundle in it:
                        t0 = time.perf_counter()
                        async with conn.transaction():
                            mid = await conn.fetchval(_MSG, ctrl, sha, raw, bundle, _VERDICT, _ACK,
                                                      datetime.now(timezone.utc))
                            await conn.execute(_OUT, mid)
                        res.latencies_ms.append((time.perf_counter() - t0) * 1000)
                        res.sent += 1
                        res.acked += 1
            await asyncio.gather(*(worker() for _ in range(conns)))
        else:
            async with pool.acquire() as conn:
                for k in range(0, n, 100):
                    chunk = rows[k:k + 100]
                    t0 = time.perf_counter()
                    await conn.execute(_MSG_BATCH, [r[0] for r in chunk], [r[1] for r in chunk],
                                       [r[2] for r in chunk], _VERDICT, _ACK, [r[3] for r in chunk])
                    dt = (time.perf_counter() - t0) * 1000
                    res.latencies_ms += [dt] * len(chunk)
                    res.sent += len(chunk)
                    res.acked += len(chunk)
        res.seconds = time.perf_counter() - start
        used = cpu() - cpu0
    finally:
        await pool.close()
    return res, used


async def prefill(url: str, n: int, chunk: int = 50_000) -> None:
    """Store ``n`` delivered messages (copies of a real row, unique control
    ids) so a run can compare a full database with an empty one."""
    conn = await asyncpg.connect(url)
    try:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            await conn.execute(f"""
WITH src AS (SELECT source, protocol, peer, message_type, content_sha256, raw, bundle, verdict, ack
             FROM message WHERE status = 'accepted' ORDER BY id LIMIT 1),
ins AS (
  INSERT INTO message (source, protocol, peer, message_type, control_id, content_sha256,
                       raw, bundle, verdict, status, ack, received_at)
  SELECT source, protocol, peer, message_type, 'PRE-' || g, content_sha256, raw, bundle, verdict,
         'accepted', ack, now() - interval '1 day'
  FROM src, generate_series({start}, {start + m - 1}) AS g
  RETURNING id)
INSERT INTO outbox (message_id, destination, state, done_at)
SELECT id, 'lis-mllp', 'delivered', now() FROM ins""")
        await conn.execute("VACUUM ANALYZE message")
        await conn.execute("VACUUM ANALYZE outbox")
    finally:
        await conn.close()
