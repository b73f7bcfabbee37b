"""Durable storage of messages and their outbox rows, with group commit.

Every message (accepted or rejected) is written with its outbox rows in ONE
transaction before its sender is acknowledged. Messages arriving on many
connections at about the same time share that transaction: a few writer tasks
take whatever is waiting in the queue (up to ``max_batch``) and commit it with
a handful of set-based statements, then wake every waiting sender. Nothing is
delayed on purpose; batches grow by themselves while a commit is in flight.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from . import logging as log_setup

log = log_setup.get("labgate.store")

NOTIFY_CHANNEL = "labgate_outbox"


@dataclass(slots=True)
class HistoryRows:
    """What an accepted message adds to the validation history tables
    (migration 0008): computed by the validator, written with the message."""
    patient_key: str
    results: list[tuple[str, datetime, float, str]] = field(default_factory=list)  # code, observed_at, value, unit
    orders: list[tuple[str, datetime]] = field(default_factory=list)               # code, ordered_at


@dataclass(slots=True)
class MessageRecord:
    """One received message as it is stored."""
    source: str
    protocol: str
    peer: str | None
    message_type: str | None
    control_id: str | None
    sha256: bytes
    raw: bytes
    bundle_json: str | None          # canonical FHIR bundle, JSON text
    verdict_json: str                # list of issues, JSON text
    status: str                      # accepted | rejected | unrouted
    ack: bytes | None
    received_at: datetime
    destinations: list[tuple[str, str]] = field(default_factory=list)  # (name, initial state)
    app_ack_to: str | None = None    # destination of the application ACK (enhanced mode)
    duplicate_of: int | None = None
    # None: not computed, the database derives the history rows from the bundle
    history: HistoryRows | None = None


@dataclass(slots=True)
class WriteResult:
    message_id: int
    duplicate: bool = False          # a message with this source + control id was stored before
    same_content: bool = True        # for a duplicate: identical bytes
    stored_ack: bytes | None = None  # for a duplicate: the acknowledgement sent the first time


_INSERT_MESSAGES = """
WITH input AS (
    SELECT nextval(pg_get_serial_sequence('message', 'id')) AS id, t.*
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[],
                $7::bytea[], $8::text[], $9::text[], $10::text[], $11::bytea[],
                $12::timestamptz[], $13::bigint[])
         WITH ORDINALITY AS t(source, protocol, peer, message_type, control_id, sha,
                              raw, bundle, verdict, status, ack, received_at, duplicate_of, ord)
), ins AS (
    INSERT INTO message (id, source, protocol, peer, message_type, control_id, content_sha256,
                         raw, bundle, verdict, status, ack, received_at, duplicate_of)
    OVERRIDING SYSTEM VALUE
    SELECT id, source, protocol, peer, message_type, control_id, sha, raw, bundle::jsonb,
           verdict::jsonb, status, ack, received_at, duplicate_of
    FROM input ORDER BY ord
    ON CONFLICT (source, control_id) WHERE duplicate_of IS NULL DO NOTHING
    RETURNING id
)
SELECT input.id, (ins.id IS NOT NULL) AS inserted
FROM input LEFT JOIN ins ON ins.id = input.id
ORDER BY input.ord
"""

_FIND_ORIGINALS = """
SELECT m.id, m.source, m.control_id, m.content_sha256, m.ack
FROM message m
JOIN unnest($1::text[], $2::text[]) AS k(source, control_id)
  ON m.source = k.source AND m.control_id = k.control_id
WHERE m.duplicate_of IS NULL
"""

# Validation history (migration 0010): rows the validator computed are inserted
# as they are; for records without them the database reads the bundle.
_HISTORY_BY_WRITER = "SELECT set_config('labgate.history_by_writer', 'on', true)"
_INSERT_HISTORY = """
WITH results AS (
    INSERT INTO validation_result (patient_key, code, observed_at, value, unit, message_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[],
                         $6::bigint[])
)
INSERT INTO validation_order (patient_key, code, ordered_at, message_id)
SELECT * FROM unnest($7::text[], $8::text[], $9::timestamptz[], $10::bigint[])
"""
_INDEX_FROM_BUNDLES = "SELECT validation_index_messages($1::bigint[])"

_INSERT_OUTBOX = """
INSERT INTO outbox (message_id, destination, state, kind)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
"""


class MessageWriter:
    """Queue messages for durable storage; ``write`` returns after commit."""

    def __init__(self, pool: asyncpg.Pool, *, writers: int = 2, max_batch: int = 256):
        self._pool = pool
        self._queue: asyncio.Queue = asyncio.Queue()
        self._max_batch = max_batch
        self._tasks = [asyncio.create_task(self._run(), name=f"writer-{i}") for i in range(writers)]
        self.batches = 0
        self.batched_messages = 0

    async def write(self, record: MessageRecord) -> WriteResult:
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((record, fut))
        return await fut

    async def close(self) -> None:
        while not self._queue.empty():
            await asyncio.sleep(0.01)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            records = [r for r, _ in batch]
            try:
                results = await self._write_batch(records)
            except Exception as exc:  # the senders get no positive ACK and will retry
                log.error("store.batch_failed", size=len(batch), error=type(exc).__name__)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(StoreUnavailable(type(exc).__name__))
                continue
            self.batches += 1
            self.batched_messages += len(batch)
            for (_, fut), res in zip(batch, results):
                if not fut.done():
                    fut.set_result(res)

    async def _write_batch(self, records: list[MessageRecord]) -> list[WriteResult]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_HISTORY_BY_WRITER)   # the writer indexes; the trigger stands down
            rows = await conn.fetch(_INSERT_MESSAGES, *_columns(records))
            results: list[WriteResult | None] = [None] * len(records)
            dup_idx = []
            outbox: tuple[list, ...] = ([], [], [], [])
            for i, (rec, row) in enumerate(zip(records, rows)):
                if row["inserted"]:
                    results[i] = WriteResult(row["id"])
                    _add_outbox_rows(outbox, row["id"], rec)
                else:
                    dup_idx.append(i)
            if dup_idx:
                await self._resolve_duplicates(conn, records, dup_idx, results)
            stored = [(rec, row["id"]) for rec, row in zip(records, rows) if row["inserted"]]
            await _write_history_and_outbox(conn, stored, outbox)
            return results  # type: ignore[return-value]

    async def _resolve_duplicates(self, conn, records, dup_idx, results) -> None:
        keys_s = [records[i].source for i in dup_idx]
        keys_c = [records[i].control_id for i in dup_idx]
        originals = {(r["source"], r["control_id"]): r
                     for r in await conn.fetch(_FIND_ORIGINALS, keys_s, keys_c)}
        same_ids = []
        for i in dup_idx:
            rec = records[i]
            orig = originals[(rec.source, rec.control_id)]
            same = bytes(orig["content_sha256"]) == rec.sha256
            results[i] = WriteResult(orig["id"], duplicate=True, same_content=same,
                                     stored_ack=orig["ack"])
            if same:
                same_ids.append(orig["id"])
        if same_ids:
            # Several copies of one message may share a batch: count each.
            await conn.execute(
                "UPDATE message m SET duplicates = duplicates + c.n"
                " FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id GROUP BY id) c"
                " WHERE m.id = c.id", same_ids)


def _add_outbox_rows(outbox: tuple[list, ...], message_id: int, rec: MessageRecord) -> None:
    """The record's outbox rows as columns of _INSERT_OUTBOX: one per
    destination, plus the application ACK in enhanced mode."""
    rows = [(dest, state, "message") for dest, state in rec.destinations]
    if rec.app_ack_to:
        rows.append((rec.app_ack_to, "pending", "app_ack"))
    for dest, state, kind in rows:
        for col, v in zip(outbox, (message_id, dest, state, kind)):
            col.append(v)


async def _write_history_and_outbox(conn, stored: list[tuple[MessageRecord, int]],
                                    outbox: tuple[list, ...]) -> None:
    """History rows of the stored (record, message id) pairs, and the outbox
    rows; wakes the delivery loops of destinations that got pending rows."""
    rows_given, by_database = _history_columns(stored)
    if rows_given is not None:
        await conn.execute(_INSERT_HISTORY, *rows_given)
    if by_database:
        await conn.execute(_INDEX_FROM_BUNDLES, by_database)
    if not outbox[0]:
        return
    await conn.execute(_INSERT_OUTBOX, *outbox)
    for dest in sorted({d for d, st in zip(outbox[1], outbox[2]) if st == "pending"}):
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, dest)


_UPDATE_EVALUATION = """
UPDATE message SET bundle = $2::jsonb, verdict = $3::jsonb, status = $4, ack = $5 WHERE id = $1
"""


async def store_reevaluation(conn, message_id: int, record: MessageRecord) -> None:
    """Store a new evaluation of a stored message in place (the console's
    replay), in the caller's transaction: verdict, bundle, status and ACK,
    and, when it is now accepted, its outbox rows (with the application ACK
    in enhanced mode) and validation history rows. The row keeps its id,
    source and control id."""
    await conn.execute(_HISTORY_BY_WRITER)
    await conn.execute(_UPDATE_EVALUATION, message_id, record.bundle_json, record.verdict_json,
                       record.status, record.ack)
    outbox: tuple[list, ...] = ([], [], [], [])
    _add_outbox_rows(outbox, message_id, record)
    await _write_history_and_outbox(conn, [(record, message_id)], outbox)


def _history_columns(stored: list[tuple[MessageRecord, int]]) -> tuple[list[list] | None, list[int]]:
    """For the stored originals that enter the history (accepted or unrouted,
    with a bundle): the arguments of _INSERT_HISTORY (None when no record
    brought rows) and the ids of those the database must index itself."""
    res: tuple[list, ...] = ([], [], [], [], [], [])
    orders: tuple[list, ...] = ([], [], [], [])
    by_database: list[int] = []
    for rec, message_id in stored:
        if rec.status == "rejected" or rec.bundle_json is None or rec.duplicate_of is not None:
            continue
        h = rec.history
        if h is None:
            by_database.append(message_id)
            continue
        for code, at, value, unit in h.results:
            for col, v in zip(res, (h.patient_key, code, at, value, unit, message_id)):
                col.append(v)
        for code, at in h.orders:
            for col, v in zip(orders, (h.patient_key, code, at, message_id)):
                col.append(v)
    return ([*res, *orders] if res[0] or orders[0] else None), by_database


class StoreUnavailable(Exception):
    """The database could not store the message; the sender must not get AA."""


def _columns(records: list[MessageRecord]) -> list[list]:
    return [
        [r.source for r in records],
        [r.protocol for r in records],
        [r.peer for r in records],
        [r.message_type for r in records],
        [r.control_id for r in records],
        [r.sha256 for r in records],
        [r.raw for r in records],
        [r.bundle_json for r in records],
        [r.verdict_json for r in records],
        [r.status for r in records],
        [r.ack for r in records],
        [r.received_at for r in records],
        [r.duplicate_of for r in records],
    ]


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                     command_timeout=60)
