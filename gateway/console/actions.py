"""What an administrator may do to a stored message: replay, retry now, discard;
and acknowledging a critical result. Every action is audited with who and why.

Replay of a *rejected* HL7 v2 message runs its stored raw bytes through the
gateway's current pipeline (current tables and configuration) as a new
evaluation, and updates the message row in place: verdict, bundle, status
and acknowledgement, plus, when it is now accepted, new outbox rows (with
the application ACK for an enhanced-mode source) and validation history
rows, which the validator remembers once the transaction commits. The row
keeps its id, source and control id, so a sender's retransmission is still
recognised as a duplicate. Instrument messages (ASTM, POCT1-A) are judged
again by the instrument pipeline (``InstrumentPipeline.evaluate``: current
registry and QC state) and stored the same way; their QC runs are recorded
in the same transaction and reach the QC cache after the commit; nothing is
sent to the instrument. Replay of a message with *dead-lettered* outbox
rows puts those rows back to ``pending`` with a fresh attempt budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import orjson

from .. import audit
from ..authz import Principal
from ..instruments.pipeline import CannotReevaluate
from ..store import NOTIFY_CHANNEL, HistoryRows, store_reevaluation

INSTRUMENT_PROTOCOLS = ("astm", "poct1a")


class ActionRefused(Exception):
    """The action does not apply to this message (the message says why)."""


@dataclass
class Outcome:
    message_id: int
    action: str
    result: str            # e.g. accepted | rejected | requeued | discarded | retried
    detail: str = ""
    # what the validator remembers once the action's transaction has committed
    history: HistoryRows | None = field(default=None, repr=False)
    # anything else in-process caches learn only after that commit (QC runs)
    after_commit: Callable[[], None] | None = field(default=None, repr=False)

    def committed(self, validator) -> None:
        """Call once the action's transaction has committed."""
        validator.remember(self.history)
        if self.after_commit is not None:
            self.after_commit()

    def to_dict(self) -> dict:
        return {"message_id": self.message_id, "action": self.action, "result": self.result,
                "detail": self.detail}


async def replay(gw, conn, message_id: int, who: Principal, reason: str, peer: str | None) -> Outcome:
    """Replay one message (rejected: re-evaluate; dead-lettered: requeue)."""
    row = await conn.fetchrow(
        "SELECT id, source, protocol, peer, message_type, control_id, received_at, raw, status,"
        " duplicate_of FROM message WHERE id = $1 FOR UPDATE", message_id)
    if row is None:
        raise ActionRefused("no such message")
    if row["status"] == "rejected":
        out = await _reevaluate(gw, conn, row)
    else:
        dead = await conn.fetch(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = now(),"
            " last_error = NULL, done_at = NULL WHERE message_id = $1 AND state = 'dead'"
            " RETURNING destination", message_id)
        if not dead:
            raise ActionRefused("only rejected or dead-lettered messages can be replayed")
        await _notify(conn, {r["destination"] for r in dead})
        out = Outcome(message_id, "replay", "requeued", ", ".join(r["destination"] for r in dead))
    await conn.execute("UPDATE message SET replays = replays + 1, discarded_at = NULL,"
                       " discard_reason = NULL WHERE id = $1", message_id)
    await audit.record(conn, who=who, action="message.replay", resource_type="Message",
                       resource_id=str(message_id), peer=peer,
                       detail=f"reason: {reason}; result: {out.result}")
    return out


async def _reevaluate(gw, conn, row) -> Outcome:
    if row["duplicate_of"] is not None:
        raise ActionRefused("a conflicting duplicate is not replayed; fix the sender's control ids")
    if row["raw"] is None:
        raise ActionRefused("the content was pruned by retention; nothing to replay")
    if row["protocol"] in INSTRUMENT_PROTOCOLS:
        return await _reevaluate_instrument(gw, conn, row)
    if row["protocol"] != "mllp" or getattr(gw, "pipeline", None) is None:
        raise ActionRefused(f"replay of {row['protocol']} messages is not supported yet")
    # The pipeline's evaluation is pure (parse, map, validate, route); storing
    # the new verdict is ours here.
    record = gw.pipeline.evaluate(bytes(row["raw"]), row["source"], peer=row["peer"],
                                  protocol=row["protocol"])
    await store_reevaluation(conn, row["id"], record)
    return Outcome(row["id"], "replay", record.status, _rejecting_codes(record.verdict_json),
                   history=record.history)


async def _reevaluate_instrument(gw, conn, row) -> Outcome:
    service = getattr(gw, "instruments", None)
    if service is None:
        raise ActionRefused(f"replay of {row['protocol']} messages needs the instrument pipeline")
    pipeline = service.pipeline
    # The device identity a POCT1-A observation does not carry itself (the
    # conversation's HEL named it) is recovered from the stored control id.
    try:
        ev = pipeline.evaluate(row["protocol"], bytes(row["raw"]), row["source"],
                               peer=row["peer"], control_id=row["control_id"],
                               received=row["received_at"])
    except CannotReevaluate as e:
        raise ActionRefused(str(e)) from None
    record = ev.record
    await store_reevaluation(conn, row["id"], record)
    if record.message_type != row["message_type"]:
        # e.g. a QC-only message from an unknown instrument was stored as a
        # patient message (not mapped): now it is known to be QC.
        await conn.execute("UPDATE message SET message_type = $2 WHERE id = $1",
                           row["id"], record.message_type)
    runs = await pipeline.store_qc(conn, row["id"], ev)
    return Outcome(row["id"], "replay", record.status, _rejecting_codes(record.verdict_json),
                   history=record.history,
                   after_commit=(lambda: pipeline.note_qc(runs)) if runs else None)


def _rejecting_codes(verdict_json: str) -> str:
    return " ".join(sorted({i["code"] for i in _issues(verdict_json)
                            if i.get("severity") in ("error", "fatal")}))


def _issues(verdict_json: str) -> list[dict]:
    return orjson.loads(verdict_json)


async def retry_now(conn, message_id: int, who: Principal, reason: str, peer: str | None) -> Outcome:
    """Make the message's pending outbox rows due now (skipping their back-off)."""
    rows = await conn.fetch(
        "UPDATE outbox SET next_attempt_at = now() WHERE message_id = $1 AND state = 'pending'"
        " RETURNING destination", message_id)
    if not rows:
        raise ActionRefused("nothing is waiting to be delivered for this message")
    await _notify(conn, {r["destination"] for r in rows})
    await audit.record(conn, who=who, action="message.retry", resource_type="Message",
                       resource_id=str(message_id), peer=peer, detail=f"reason: {reason}")
    return Outcome(message_id, "retry", "retried", ", ".join(r["destination"] for r in rows))


async def discard(conn, message_id: int, who: Principal, reason: str, peer: str | None) -> Outcome:
    """Stop delivering the message (pending and dead rows become discarded) and mark it."""
    done = await conn.execute(
        "UPDATE message SET discarded_at = now(), discard_reason = $2 WHERE id = $1",
        message_id, reason)
    if done.endswith(" 0"):
        raise ActionRefused("no such message")
    await conn.execute(
        "UPDATE outbox SET state = 'discarded', done_at = now() WHERE message_id = $1"
        " AND state IN ('pending', 'dead', 'held')", message_id)
    await audit.record(conn, who=who, action="message.discard", resource_type="Message",
                       resource_id=str(message_id), peer=peer, detail=f"reason: {reason}")
    return Outcome(message_id, "discard", "discarded")


async def acknowledge_critical(conn, message_id: int, who: Principal, *, phoned_to: str,
                               phoned_at: datetime, note: str, peer: str | None) -> None:
    row = await conn.fetchrow("SELECT critical, patient FROM message WHERE id = $1", message_id)
    if row is None or not row["critical"]:
        raise ActionRefused("no critical result with this id")
    done = await conn.execute(
        "INSERT INTO critical_ack (message_id, acknowledged_by, phoned_to, phoned_at, note)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        message_id, who.name, phoned_to, phoned_at, note or None)
    if done.endswith(" 0"):
        raise ActionRefused("this critical result was acknowledged already")
    await audit.record(conn, who=who, action="critical.acknowledge", resource_type="Message",
                       resource_id=str(message_id), patient=row["patient"], peer=peer,
                       detail=f"phoned to {phoned_to} at {phoned_at.isoformat()}")


async def _notify(conn, destinations: set[str]) -> None:
    for d in sorted(destinations):
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, d)
