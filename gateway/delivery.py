"""Delivery workers: take outbox rows and send them to their destinations.

One loop per push destination in every gateway process. A loop claims due
rows with ``FOR UPDATE SKIP LOCKED`` inside a transaction, sends them, and
records the outcome in the same transaction, so a row is never claimed by two
workers at once. Ordered destinations also take a transaction-scoped advisory
lock, so across all gateways one sender at a time talks to them, in id order.

Delivery is at-least-once: if a gateway dies after the destination ACKed but
before the commit, the row is sent again after restart. Each outbound message
carries a control id derived from its outbox id (``LG<id>``), so a receiver
can recognise the repeat; docs/architecture.md explains the choice.
"""
from __future__ import annotations

import asyncio
import random
import time
import zlib
from datetime import datetime, timezone
from typing import NamedTuple

import asyncpg

from adapters.mllp import MllpClient, MllpError
from mappings.hl7v2 import from_fhir
from mappings.hl7v2.from_fhir import bundle_to_oru_r01
from mappings.hl7v2.parser import Hl7ParseError, parse

from . import logging as log_setup
from .config import Config, Destination
from .listen import PgListener
from .metrics import Metrics
from .store import NOTIFY_CHANNEL

log = log_setup.get("labgate.delivery")

POLL_SECONDS = 1.0
ACQUIRE_TIMEOUT = 10.0        # waiting for a pool connection
ROUND_TIMEOUT = 30.0          # one claim+send+record round, plus ack_timeout per row

_CLAIM = """
SELECT o.id, o.attempts, o.next_attempt_at, m.bundle::text AS bundle, o.kind,
       CASE WHEN o.kind = 'app_ack' THEN m.raw END AS raw,
       CASE WHEN o.kind = 'app_ack' THEN m.verdict::text END AS verdict,
       CASE WHEN o.kind = 'app_ack' THEN m.status END AS status
FROM outbox o JOIN message m ON m.id = o.message_id
WHERE o.destination = $1 AND o.state = 'pending' {due}
ORDER BY {order}
LIMIT $2
FOR UPDATE OF o SKIP LOCKED
"""

# Ordered: strictly by id (outbox_pending_id_idx). Unordered: whatever is due,
# oldest due first (outbox_due_idx), so rows backing off are not even read.
_CLAIM_ORDERED = _CLAIM.format(due="", order="o.id")
_CLAIM_DUE = _CLAIM.format(due="AND o.next_attempt_at <= now()", order="o.next_attempt_at, o.id")

# The round's outcomes and attempt rows, committed without waiting for the
# WAL flush (migration 0016 says why that keeps at-least-once delivery).
_FINISH = """
SELECT labgate_finish_deliveries($1::bigint[], $2::text[], $3::int[], $4::text[],
                                 $5::timestamptz[], $6::text[], $7::text[], $8::int[])
"""


class SendFailed(Exception):
    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class MllpSender:
    """Sends canonical bundles to an MLLP destination as ORU^R01 and checks the ACK."""

    def __init__(self, dest: Destination, config: Config):
        self._dest = dest
        self._gateway = config.gateway
        ssl_ctx = None
        if dest.tls:   # MLLP over TLS
            from .mllp_tls import destination_context
            ssl_ctx = destination_context(dest.tls, f"destinations.{dest.name}")
        self._client = MllpClient(dest.host, dest.port, ack_timeout=dest.ack_timeout_s, ssl=ssl_ctx,
                                  server_hostname=(dest.tls.server_hostname or dest.host)
                                  if dest.tls else None)

    async def send(self, outbox_id: int, bundle_json: str) -> str:
        import orjson
        bundle = orjson.loads(bundle_json)
        build = _builder_for(bundle)
        try:
            message = build(
                bundle, control_id=f"LG{outbox_id}",
                timestamp=datetime.now(timezone.utc), sending_app=self._gateway.name,
                sending_facility=self._gateway.facility, receiving_app=self._dest.system)
        except ValueError as e:   # the payload cannot be written in this form
            raise SendFailed("error", f"cannot build the outbound message: {e}"[:500]) from None
        return await self.send_bytes(message)

    async def send_app_ack(self, row) -> str:
        """The application ACK of a stored message (enhanced mode)."""
        from .pipeline import application_ack
        return await self.send_bytes(application_ack(
            bytes(row["raw"]), row["verdict"], row["status"], control_id=f"LG{row['id']}",
            timestamp=datetime.now(timezone.utc), sending_app=self._gateway.name,
            sending_facility=self._gateway.facility))

    async def send_bytes(self, message: bytes) -> str:
        try:
            reply = await self._client.send(message)
        except MllpError as e:
            raise SendFailed("timeout" if "imeout" in type(e).__name__ else "error",
                             f"{type(e).__name__}: {e}") from None
        return _check_ack(reply)

    async def close(self) -> None:
        await self._client.close()


def _builder_for(bundle: dict):
    """The outbound builder for a payload: orders (ServiceRequests, no results)
    go as OML^O21, everything else as ORU^R01."""
    types = {e.get("resource", {}).get("resourceType") for e in bundle.get("entry", [])
             if isinstance(e, dict) and isinstance(e.get("resource"), dict)}
    if "ServiceRequest" in types and "DiagnosticReport" not in types \
            and _observations_are_order_info(bundle):
        oml = getattr(from_fhir, "bundle_to_oml_o21", None)
        if oml is None:
            raise SendFailed("error", "no OML^O21 builder in mappings.hl7v2.from_fhir")
        return oml
    return bundle_to_oru_r01


def _observations_are_order_info(bundle: dict) -> bool:
    """True when every Observation is an order's supportingInfo (the OBX of an
    OML^O21/ORM^O01, e.g. ask-at-order-entry answers), i.e. none is a result."""
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict)
               and isinstance(e.get("resource"), dict)]
    info = {ref.get("reference") for e in entries
            if e["resource"].get("resourceType") == "ServiceRequest"
            for ref in e["resource"].get("supportingInfo") or [] if isinstance(ref, dict)}
    return all(e.get("fullUrl") in info for e in entries
               if e["resource"].get("resourceType") == "Observation")


# Internal destination types (no network peer) provide a sender from their own
# package: type -> module that registers a factory(dest, config, pool) in SENDERS.
SENDERS: dict = {}
_SENDER_MODULES = {"orders": "gateway.fhir.linking", "fhir": "gateway.fhir_push"}


def _sender_for(dest: Destination, config: Config, pool: asyncpg.Pool):
    """The sender of one push destination. Modules of other types import this
    one, so they are imported here, when first needed, and register themselves."""
    if dest.type == "mllp":
        return MllpSender(dest, config)
    import importlib
    importlib.import_module(_SENDER_MODULES[dest.type])
    return SENDERS[dest.type](dest, config, pool)


def _check_ack(reply: bytes) -> str:
    try:
        msg = parse(reply)
    except Hl7ParseError as e:
        raise SendFailed("error", f"unreadable ACK: {e.issue.text}") from None
    code = msg.get("MSA", 1)
    if code in ("AA", "CA"):
        return code
    text = msg.get("ERR", 8) or msg.get("MSA", 3) or msg.get("ERR", 5, comp=2)
    raise SendFailed("rejected", f"{code or 'no MSA'}: {text}"[:500])


class Round(NamedTuple):
    """One delivery round: rows finished (0 when none was delivered), how
    long to wait for a NOTIFY before looking again, whether to look again
    at once, and whether another gateway holds the destination's lock."""
    finished: int
    wait: float
    again: bool = False
    locked_out: bool = False


class DeliveryService:
    """Runs one delivery loop per push destination, woken by NOTIFY."""

    def __init__(self, pool: asyncpg.Pool, config: Config, metrics: Metrics, listener: PgListener):
        self._pool = pool
        self._config = config
        self._metrics = metrics
        self._dests = [d for d in config.destinations if d.type != "pull"]
        self._wake = {d.name: asyncio.Event() for d in self._dests}
        self._senders = {d.name: _sender_for(d, config, pool) for d in self._dests}
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        if self._dests:
            # Notifications sent while the LISTEN connection was down are
            # lost, so every loop is woken once after it is re-opened.
            listener.subscribe(NOTIFY_CHANNEL, self._on_notify, on_reconnect=self._wake_all)

    async def start(self) -> None:
        """Start the loops; the listener they subscribed to is started by the caller."""
        for d in self._dests:
            self._tasks.append(asyncio.create_task(self._loop(d), name=f"deliver-{d.name}"))

    def _wake_all(self) -> None:
        for ev in self._wake.values():
            ev.set()

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for s in self._senders.values():
            await s.close()

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        ev = self._wake.get(payload)
        if ev is not None:
            ev.set()

    async def _loop(self, dest: Destination) -> None:
        wake = self._wake[dest.name]
        gather = dest.gather_ms / 1000
        while not self._stopping:
            # Cleared before the claim, so a NOTIFY for rows committed after
            # the claim's snapshot leaves it set and is never lost.
            wake.clear()
            try:
                async with asyncio.timeout(ROUND_TIMEOUT + dest.batch * dest.ack_timeout_s):
                    done = await self.run_once(dest)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning("delivery.db_error", destination=dest.name, error=type(e).__name__)
                done = Round(0, POLL_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as e:   # a loop that dies silently strands its queue
                log.error("delivery.round_failed", destination=dest.name, error=type(e).__name__)
                done = Round(0, POLL_SECONDS)
            if done.again:
                continue
            if done.locked_out:
                # Another gateway is delivering to this ordered destination and
                # drains what every NOTIFY announces; answering each of them
                # with a failed lock attempt only costs both gateways and the
                # database. Look again after the poll interval (the takeover
                # time when that gateway stops).
                await asyncio.sleep(done.wait)
                continue
            if done.finished and gather:
                await asyncio.sleep(gather)   # let the next round find more than one row
            if wake.is_set():
                continue
            try:
                await asyncio.wait_for(wake.wait(), timeout=done.wait)
            except asyncio.TimeoutError:
                pass

    async def run_once(self, dest: Destination) -> "Round":
        """Claim and send one batch."""
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            if dest.ordered:
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _lock_key(dest.name)):
                    self._metrics.delivery_locked_out.labels(dest.name).inc()
                    return Round(0, POLL_SECONDS, locked_out=True)
                rows = await conn.fetch(_CLAIM_ORDERED, dest.name, dest.batch)
            else:
                rows = await conn.fetch(_CLAIM_DUE, dest.name, dest.batch)
            if not rows:
                return Round(0, POLL_SECONDS)
            now = datetime.now(timezone.utc)
            if rows[0]["next_attempt_at"] > now:   # ordered: the head row is backing off
                return Round(0, min(POLL_SECONDS * 5, (rows[0]["next_attempt_at"] - now).total_seconds()))
            done = await self._send_rows(conn, dest, rows)
        # A full batch, or one cut short by a failure or a row not yet due:
        # look again at once (the next claim works out how long to wait).
        return Round(done, POLL_SECONDS, again=done > 0 and (len(rows) >= dest.batch or done < len(rows)))

    async def _send_rows(self, conn, dest: Destination, rows) -> int:
        sender = self._senders[dest.name]
        upd = ([], [], [], [], [])   # id, state, attempts, error, next attempt
        att = ([], [], [])           # outcome, detail, duration ms
        sent = 0
        for row in rows:
            if row["next_attempt_at"] > datetime.now(timezone.utc):
                break
            attempts = row["attempts"] + 1
            t0 = time.perf_counter()
            self._metrics.delivery_attempts.labels(dest.name).inc()
            try:
                code = await (sender.send_app_ack(row) if row["kind"] == "app_ack"
                              else sender.send(row["id"], row["bundle"]))
                state, error, next_at, outcome, detail = "delivered", None, datetime.now(timezone.utc), "delivered", code
                sent += 1
            except SendFailed as f:
                self._metrics.delivery_failures.labels(dest.name, f.outcome).inc()
                state, error, outcome, detail = "pending", f.detail, f.outcome, f.detail
                next_at = datetime.now(timezone.utc) + _backoff(dest, attempts)
                if attempts >= dest.max_attempts:
                    state, outcome = "dead", "dead"
                    self._metrics.dead_letters.labels(dest.name).inc()
                    log.warning("delivery.dead_letter", destination=dest.name, outbox_id=row["id"],
                                attempts=attempts)
            for col, v in zip(upd, (row["id"], state, attempts, error, next_at)):
                col.append(v)
            for col, v in zip(att, (outcome, detail, int((time.perf_counter() - t0) * 1000))):
                col.append(v)
            if state == "pending" and dest.ordered:
                break   # keep order: nothing after a failed row goes first
        if upd[0]:
            await conn.execute(_FINISH, *upd, *att)
        return len(upd[0]) if sent else 0


def _backoff(dest: Destination, attempts: int):
    from datetime import timedelta
    base = min(dest.backoff_max_s, dest.backoff_initial_s * (2 ** (attempts - 1)))
    return timedelta(seconds=base * random.uniform(0.5, 1.0))


def _lock_key(name: str) -> int:
    return zlib.crc32(b"labgate-destination:" + name.encode()) & 0x7FFFFFFF
