"""What each trigger on ``message`` costs the durable store.

Stores N realistic accepted ORU^R01 messages through the real MessageWriter
(group commit, 32 concurrent senders) into a fresh database, once with every
trigger enabled and once with each trigger disabled in turn, and prints
messages/s and PostgreSQL CPU seconds per 1,000 messages.

The validation history trigger is not in the list: MessageWriter's
transactions switch it off (migration 0010). These records carry no
validator rows, so the writer has the database index them from their
bundles (validation_index_messages), which "all triggers" includes; the
gateway's MLLP path sends the rows and skips that work.

    python -m bench.trigger_cost [--n 4000]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson

from bench import harness
from gateway import migrate
from gateway.store import MessageRecord, MessageWriter, create_pool
from mappings.hl7v2.parser import parse
from mappings.hl7v2.to_fhir import to_bundle

TRIGGERS = ["message_console_keys", "message_audit_received"]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "messages" / "oru-r01-poc-crp-hb.hl7"


def _records(n: int) -> list[MessageRecord]:
    raw0 = EXAMPLE.read_bytes()
    out = []
    for i in range(n):
        raw = raw0.replace(b"POC20250314-000123", f"TC-{i}".encode())
        bundle, issues = to_bundle(parse(raw))
        out.append(MessageRecord(
            source="poc", protocol="mllp", peer="127.0.0.1", message_type="ORU^R01",
            control_id=f"TC-{i}", sha256=hashlib.sha256(raw).digest(), raw=raw,
            bundle_json=orjson.dumps(bundle).decode(), verdict_json="[]", status="accepted",
            ack=b"MSH|^~\\&|ACK", received_at=datetime.now(timezone.utc),
            destinations=[("ehr-pull", "held")]))
    return out


async def _run(pg: harness.Postgres, records, disabled: str | None) -> tuple[float, float]:
    url = await pg.create_database("tc_" + uuid.uuid4().hex[:8])
    pool = await create_pool(url, min_size=4, max_size=10)
    async with pool.acquire() as conn:
        await migrate.apply(conn)
        if disabled:
            await conn.execute(f"ALTER TABLE message DISABLE TRIGGER {disabled}")
    writer = MessageWriter(pool, writers=2, max_batch=256)
    queue = list(records)

    async def sender():
        while queue:
            await writer.write(queue.pop())

    cpu0, t0 = harness.postgres_cpu_seconds(), time.perf_counter()
    await asyncio.gather(*[sender() for _ in range(32)])
    wall, cpu = time.perf_counter() - t0, harness.postgres_cpu_seconds() - cpu0
    await writer.close()
    await pool.close()
    return len(records) / wall, cpu / len(records) * 1000


async def main(n: int) -> None:
    pg = harness.Postgres(Path(tempfile.mkdtemp()) / "pgdata")
    pg.start()
    try:
        records = _records(n)
        for disabled in [None] + TRIGGERS + [None]:
            rate, cpu = await _run(pg, [MessageRecord(**{f: getattr(r, f) for f in r.__slots__}) for r in records], disabled)
            label = f"without {disabled}" if disabled else "all triggers"
            print(f"{label:40s} {rate:8.1f} msg/s   PostgreSQL {cpu:5.2f} CPU s per 1,000")
    finally:
        pg.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    asyncio.run(main(ap.parse_args().n))
