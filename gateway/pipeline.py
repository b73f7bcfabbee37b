"""The inbound path for HL7 v2: parse → FHIR → validate → route → store → ACK.

The hot path works on the lean parser's structures and plain dicts, and
serialises with orjson; the acknowledgement is returned only after the
message and its outbox rows are committed (see store.MessageWriter).

Acknowledgement modes (HL7 v2 chapter 2), chosen per message and source:

- **original** (the default for every source, and for any message with
  MSH-15 and MSH-16 empty): AA, AE (content rejected) or AR (message
  rejected as a whole) on the connection, after the commit.
- **enhanced** (source ``ack_mode = "enhanced"`` and MSH-15 or MSH-16 set):
  the commit ACK goes on the connection right after the commit — CA when
  the message is stored for processing (also when its content will be
  rejected), CR when it is refused as a whole — as MSH-15 asks (AL always,
  NE never, ER only CR, SU only CA; empty = AL). The application ACK
  (AA/AE/AR with the ERR segments) is then a message of its own to the
  source's ``ack_destination``, through the outbox (durable, retried), as
  MSH-16 asks (AL, NE, ER only AE/AR, SU only AA; empty = AL). It is built
  at delivery time from the stored message and verdict (``application_ack``).

A duplicate (same source, MSH-10 and bytes) gets the stored answer again and
no second application ACK; the same MSH-10 with other bytes is refused with
DUPLICATE-CONTROL-ID-CONFLICT (AR, or CR in enhanced mode).
"""
from __future__ import annotations

import hashlib
import itertools
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import orjson

from mappings.hl7v2.ack import build_ack
from mappings.hl7v2.parser import Hl7ParseError, parse
from mappings.hl7v2.locations import at_v2_locations
from mappings.hl7v2.to_fhir import to_bundle
from mappings.issue import Issue, rejects

from . import logging as log_setup
from .metrics import Metrics
from .routing import Router
from .store import MessageRecord, MessageWriter, StoreUnavailable

if TYPE_CHECKING:
    from .validator import Validator

log = log_setup.get("labgate.pipeline")

# Issues that make a message unacceptable as a whole (HL7 AR), as opposed to
# content errors (AE).
_AR_CODES = frozenset({"HL7-UNSUPPORTED-MESSAGE-TYPE"})

DUPLICATE_CONFLICT = Issue(
    "error", "DUPLICATE-CONTROL-ID-CONFLICT", "MSH-10",
    "A different message with this control id (MSH-10) was already received from this sender; "
    "control ids must be unique per sender",
    "En annen melding med samme kontroll-id (MSH-10) er allerede mottatt fra denne avsenderen")
NO_ROUTE = Issue("warning", "ROUTE-NONE", "MSH-9",
                 "No route sends this kind of message from this sender anywhere; it is stored, "
                 "not delivered", "Ingen rute for denne meldingen; lagret, ikke videresendt")


class Hl7Pipeline:
    def __init__(self, *, writer: MessageWriter, router: Router, metrics: Metrics,
                 gateway_name: str = "LABGATE", facility: str = "",
                 validator: Validator | None = None, systems: dict | None = None):
        self._writer = writer
        self._router = router
        self._metrics = metrics
        self._name = gateway_name
        self._facility = facility
        self._validator = validator
        self._systems = systems or {}     # name → config.System (ack_mode, ack_destination)
        pid = f"{os.getpid() % 10000:04d}"   # once: getpid() is a system call per ACK
        self._ack_ids = (f"{pid}{n}" for n in itertools.count(1))
        self._ack_prefix = "LG" + os.urandom(3).hex()

    async def handle(self, raw: bytes, source: str, peer: str | None = None,
                     protocol: str = "mllp") -> bytes | None:
        """Process one message and return the ACK to send after commit (None: send none)."""
        received = datetime.now(timezone.utc)
        record, ack, mode = self._evaluate(raw, source, peer, protocol, received)
        try:
            result = await self._writer.write(record)
        except StoreUnavailable:
            self._metrics.store_failures.labels(source).inc()
            raise
        if not result.duplicate:
            if self._validator is not None:
                self._validator.remember(record.history)   # committed: now it is history
            self._count(record)
            return ack if mode.send_commit(ack) else None
        self._metrics.duplicates.labels(source).inc()
        if result.same_content:
            stored = result.stored_ack or ack
            return stored if mode.send_commit(stored) else None
        return await self._store_conflict(record, result.message_id, received, mode)

    def _mode(self, header: dict, source: str) -> "AckMode":
        system = self._systems.get(source)
        if system is None or getattr(system, "ack_mode", "original") != "enhanced":
            return ORIGINAL
        accept = (header.get("accept_ack_type") or "").strip().upper()
        app = (header.get("app_ack_type") or "").strip().upper()
        if not accept and not app:
            return ORIGINAL
        return AckMode(True, accept or "AL", app or "AL", system.ack_destination)

    def evaluate(self, raw: bytes, source: str, *, peer: str | None = None,
                 protocol: str = "mllp", received: datetime | None = None) -> MessageRecord:
        """What storing this message now would store (parse, map, validate,
        route), without writing it or remembering its history. The console's
        replay uses it."""
        return self._evaluate(raw, source, peer, protocol, received or datetime.now(timezone.utc))[0]

    def _evaluate(self, raw, source, peer, protocol, received):
        """Parse, map, validate, route: (record, ack, mode). Nothing is written
        and nothing remembered here; ``record.history`` holds what the message
        adds to the validation history once stored."""
        sha = hashlib.sha256(raw).digest()
        try:
            msg = parse(raw)
        except Hl7ParseError as e:
            header = e.header or {}
            mode = self._mode(header, source)
            ack = self._ack(header, mode.code("AR"), [e.issue], received, "utf-8")
            return self._record(raw, sha, source, peer, protocol, header, None,
                                [e.issue], "rejected", ack, received, []), ack, mode
        header = msg.header()
        mode = self._mode(header, source)
        sources: list[str] = []
        bundle, issues = to_bundle(msg, sources=sources)
        history = None
        if not rejects(issues) and self._validator is not None:
            checked = self._validator.check(bundle, source)
            issues, history = issues + checked.issues, checked.history
        if rejects(issues):
            code = "AR" if any(i.code in _AR_CODES for i in issues) else "AE"
            status, dests = "rejected", []
        else:
            code = "AA"
            dests = self._router.destinations(source, header.get("message_type"))
            status = "accepted" if dests else "unrouted"
            if not dests:
                issues = issues + [NO_ROUTE]
        # Enhanced mode: the connection gets the commit ACK, without the content verdict.
        ack = self._ack(header, mode.code(code),
                        at_v2_locations(issues, sources) if not mode.enhanced or code == "AR"
                        else [], received, msg.encoding)
        record = self._record(raw, sha, source, peer, protocol, header, bundle, issues,
                              status, ack, received, dests)
        record.history = history   # None when rejected: check() gives rows only then
        if mode.wants_app_ack(code):
            record.app_ack_to = mode.ack_destination
        return record, ack, mode

    def _ack(self, header, code, issues, received, encoding) -> bytes:
        return build_ack(header or None, code, issues, control_id=self._ack_prefix + next(self._ack_ids),
                         timestamp=received, sending_app=self._name,
                         sending_facility=self._facility, encoding=encoding)

    @staticmethod
    def _record(raw, sha, source, peer, protocol, header, bundle, issues, status, ack,
                received, dests) -> MessageRecord:
        return MessageRecord(
            source=source, protocol=protocol, peer=peer,
            message_type=header.get("message_type") or None,
            control_id=header.get("control_id") or None,
            sha256=sha, raw=raw,
            bundle_json=orjson.dumps(bundle).decode() if bundle is not None else None,
            verdict_json=orjson.dumps([i.to_dict() for i in issues]).decode(),
            status=status, ack=ack, received_at=received, destinations=dests)

    async def _store_conflict(self, record: MessageRecord, original_id: int, received,
                              mode: "AckMode") -> bytes | None:
        header = {"control_id": record.control_id, "message_type": record.message_type}
        try:
            header = parse(record.raw).header()
        except Hl7ParseError:
            pass
        issues = [DUPLICATE_CONFLICT]
        ack = self._ack(header, mode.code("AR"), issues, received, "utf-8")
        record.status, record.destinations, record.ack = "rejected", [], ack
        record.app_ack_to = None
        record.verdict_json = orjson.dumps([i.to_dict() for i in issues]).decode()
        record.duplicate_of = original_id
        await self._writer.write(record)
        self._count(record)
        return ack if mode.send_commit(ack) else None

    def _count(self, record: MessageRecord) -> None:
        mtype = record.message_type or "unknown"
        self._metrics.received.labels(record.source, mtype).inc()
        if record.status == "rejected":
            self._metrics.rejected.labels(record.source, mtype).inc()
        else:
            self._metrics.accepted.labels(record.source, mtype).inc()


_COMMIT = {"AA": "CA", "AE": "CA", "AR": "CR"}


class AckMode:
    """How one message is acknowledged: original, or enhanced with MSH-15/16."""

    __slots__ = ("enhanced", "accept", "app", "ack_destination")

    def __init__(self, enhanced: bool, accept: str = "", app: str = "",
                 ack_destination: str | None = None):
        self.enhanced, self.accept, self.app = enhanced, accept, app
        self.ack_destination = ack_destination

    def code(self, verdict: str) -> str:
        """The code on the connection for an AA/AE/AR verdict."""
        return _COMMIT[verdict] if self.enhanced else verdict

    def send_commit(self, ack: bytes) -> bool:
        """Whether the ACK goes on the connection (MSH-15 in enhanced mode)."""
        if not self.enhanced:
            return True
        return _wanted(self.accept, ack_code(ack) == "CA")

    def wants_app_ack(self, verdict: str) -> bool:
        """Whether an application ACK is queued (MSH-16); never after CR."""
        if not self.enhanced or verdict == "AR" or not self.ack_destination:
            return False
        return _wanted(self.app, verdict == "AA")


ORIGINAL = AckMode(False)


def _wanted(condition: str, success: bool) -> bool:
    """HL7 table 0155: AL always, NE never, ER on error only, SU on success only."""
    if condition == "NE":
        return False
    if condition == "ER":
        return not success
    if condition == "SU":
        return success
    return True


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK we built (standard delimiters)."""
    start = ack.find(b"\rMSA|")
    return ack[start + 5:start + 7].decode("ascii", "replace") if start >= 0 else ""


def application_ack(raw: bytes, verdict_json: str, status: str, *, control_id: str,
                    timestamp: datetime, sending_app: str = "LABGATE",
                    sending_facility: str = "") -> bytes:
    """The application ACK (AA/AE) of a stored message, from its raw bytes and
    verdict: what the delivery worker sends to the source's ack_destination."""
    msg = parse(raw)
    sources: list[str] = []
    to_bundle(msg, sources=sources)
    issues = at_v2_locations([Issue.from_dict(d) for d in orjson.loads(verdict_json or "[]")],
                             sources)
    code = "AE" if status == "rejected" else "AA"
    return build_ack(msg.header(), code, issues, control_id=control_id, timestamp=timestamp,
                     sending_app=sending_app, sending_facility=sending_facility,
                     encoding=msg.encoding)
