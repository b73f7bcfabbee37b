"""The inbound path for HL7 v2: parse → FHIR → validate → route → store → ACK.

The hot path works on the lean parser's structures and plain dicts, and
serialises with orjson; the acknowledgement is returned only after the
message and its outbox rows are committed (see store.MessageWriter).
"""
from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable
from datetime import datetime, timezone

import orjson

from mappings.hl7v2.ack import build_ack
from mappings.hl7v2.parser import Hl7ParseError, parse
from mappings.hl7v2.to_fhir import to_bundle
from mappings.issue import Issue, rejects

from . import logging as log_setup
from .metrics import Metrics
from .routing import Router
from .store import MessageRecord, MessageWriter, StoreUnavailable

log = log_setup.get("labgate.pipeline")

Validator = Callable[[dict, str], list[Issue]]

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
                 validate: Validator | None = None):
        self._writer = writer
        self._router = router
        self._metrics = metrics
        self._name = gateway_name
        self._facility = facility
        self._validate = validate
        self._ack_ids = (f"{os.getpid() % 10000:04d}{n}" for n in itertools.count(1))
        self._ack_prefix = "LG" + os.urandom(3).hex()

    async def handle(self, raw: bytes, source: str, peer: str | None = None,
                     protocol: str = "mllp") -> bytes:
        """Process one message and return the ACK to send (after commit)."""
        received = datetime.now(timezone.utc)
        record, ack = self._evaluate(raw, source, peer, protocol, received)
        try:
            result = await self._writer.write(record)
        except StoreUnavailable:
            self._metrics.store_failures.labels(source).inc()
            raise
        if not result.duplicate:
            self._count(record)
            return ack
        self._metrics.duplicates.labels(source).inc()
        if result.same_content:
            return result.stored_ack or ack
        return await self._store_conflict(record, result.message_id, received)

    def _evaluate(self, raw, source, peer, protocol, received) -> tuple[MessageRecord, bytes]:
        sha = hashlib.sha256(raw).digest()
        try:
            msg = parse(raw)
        except Hl7ParseError as e:
            header = e.header or {}
            ack = self._ack(header, "AR", [e.issue], received, "utf-8")
            return self._record(raw, sha, source, peer, protocol, header, None,
                                [e.issue], "rejected", ack, received, []), ack
        header = msg.header()
        bundle, issues = to_bundle(msg)
        if not rejects(issues) and self._validate is not None:
            issues = issues + self._validate(bundle, source)
        if rejects(issues):
            code = "AR" if any(i.code in _AR_CODES for i in issues) else "AE"
            status, dests = "rejected", []
        else:
            code = "AA"
            dests = self._router.destinations(source, header.get("message_type"))
            status = "accepted" if dests else "unrouted"
            if not dests:
                issues = issues + [NO_ROUTE]
        ack = self._ack(header, code, issues, received, msg.encoding)
        return self._record(raw, sha, source, peer, protocol, header, bundle, issues,
                            status, ack, received, dests), ack

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

    async def _store_conflict(self, record: MessageRecord, original_id: int, received) -> bytes:
        header = {"control_id": record.control_id, "message_type": record.message_type}
        try:
            header = parse(record.raw).header()
        except Hl7ParseError:
            pass
        issues = [DUPLICATE_CONFLICT]
        ack = self._ack(header, "AR", issues, received, "utf-8")
        record.status, record.destinations, record.ack = "rejected", [], ack
        record.verdict_json = orjson.dumps([i.to_dict() for i in issues]).decode()
        record.duplicate_of = original_id
        await self._writer.write(record)
        self._count(record)
        return ack

    def _count(self, record: MessageRecord) -> None:
        mtype = record.message_type or "unknown"
        self._metrics.received.labels(record.source, mtype).inc()
        if record.status == "rejected":
            self._metrics.rejected.labels(record.source, mtype).inc()
        else:
            self._metrics.accepted.labels(record.source, mtype).inc()
