"""Durable storage of messages and their outbox rows, with group commit.

Every message (accepted or rejected) is written with its outbox rows in ONE
transaction before its sender is acknowledged. Messages arriving on many
connections at about the same time share that transaction: a few writer tasks
take whatever is waiting in the queue (up to ``max_batch``) and commit it with
one statement (labgate_store_messages, migration 0013: one round trip, its own
transaction), then wake every waiting sender. Nothing is
delayed on purpose; batches grow by themselves while a commit is in flight.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from . import logging as log_setup

log = log_setup.get("labgate.store")

NOTIFY_CHANNEL = "labgate_outbox"   # also named in migration 0013


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


# migration 0013: the whole group commit (messages, duplicates, history,
# outbox, wake-ups) is one statement in its own transaction: one round trip.
_STORE_MESSAGES = ("SELECT * FROM labgate_store_messages("
                   + ", ".join(f"${i}" for i in range(1, 29)) + ")")
_WRITE_FOLLOWUPS = ("SELECT labgate_write_followups("
                    + ", ".join(f"${i}" for i in range(1, 17)) + ")")


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
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_STORE_MESSAGES, *_columns(records), *_followup_columns(records))
        results: list[WriteResult | None] = [None] * len(records)
        for r in rows:
            results[r["ord"] - 1] = (WriteResult(r["id"]) if r["inserted"] else WriteResult(
                r["id"], duplicate=True, same_content=r["same_content"], stored_ack=r["stored_ack"]))
        if None in results:   # cannot happen while the unique index holds; never ACK blindly
            raise RuntimeError("store: a repeated message's original was not found")
        return results  # type: ignore[return-value]


_UPDATE_EVALUATION = """
UPDATE message SET bundle = $2::jsonb, verdict = $3::jsonb, status = $4, ack = $5 WHERE id = $1
"""


async def store_reevaluation(conn, message_id: int, record: MessageRecord) -> None:
    """Store a new evaluation of a stored message in place (the console's
    replay), in the caller's transaction: verdict, bundle, status and ACK,
    and, when it is now accepted, its outbox rows (with the application ACK
    in enhanced mode) and validation history rows. The row keeps its id,
    source and control id."""
    await conn.execute(_UPDATE_EVALUATION, message_id, record.bundle_json, record.verdict_json,
                       record.status, record.ack)
    await conn.execute(_WRITE_FOLLOWUPS, [message_id], *_followup_columns([record]))


def _followup_columns(records: list[MessageRecord]) -> list[list]:
    """The history, index and outbox arrays of labgate_write_followups, each
    row naming its record by position (1-based). History: for originals that
    enter it (not rejected, with a bundle), the validator's rows, or the
    position in index_ord when the database must derive them from the
    bundle. Outbox: one row per destination, plus the application ACK in
    enhanced mode. The database keeps only the rows of records it stored."""
    hr: tuple[list, ...] = ([], [], [], [], [], [])
    ho: tuple[list, ...] = ([], [], [], [])
    index_ord: list[int] = []
    ob: tuple[list, ...] = ([], [], [], [])
    for pos, rec in enumerate(records, 1):
        for dest, state in rec.destinations:
            _append(ob, (pos, dest, state, "message"))
        if rec.app_ack_to:
            _append(ob, (pos, rec.app_ack_to, "pending", "app_ack"))
        if rec.status == "rejected" or rec.bundle_json is None or rec.duplicate_of is not None:
            continue
        h = rec.history
        if h is None:
            index_ord.append(pos)
            continue
        for code, at, value, unit in h.results:
            _append(hr, (pos, h.patient_key, code, at, value, unit))
        for code, at in h.orders:
            _append(ho, (pos, h.patient_key, code, at))
    return [*hr, *ho, index_ord, *ob]


def _append(columns: tuple[list, ...], row: tuple) -> None:
    for col, v in zip(columns, row):
        col.append(v)


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


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10,
                      instance: str = "") -> asyncpg.Pool:
    """The gateway's pool. ``instance`` is set as ``labgate.instance`` on every
    connection (a startup setting, so the pool's reset keeps it): the history
    notifications of migration 0017 carry it (gateway/history_feed.py)."""
    settings = {"labgate.instance": instance} if instance else None
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                     command_timeout=60, server_settings=settings)
