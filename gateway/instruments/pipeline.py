"""The instrument path: ASTM message / POCT1-A observation -> mapping (the
instrument's code map) -> instrument checks -> validation (with the QC and
operator lookups) -> route -> durable store -> QC events -> answer.

- ``message_type`` for routing: ``ASTM`` (ASTM patient results) and
  ``POCT1A-OBS`` (POCT1-A patient results). Messages holding only QC runs
  (``ASTM-QC``, ``POCT1A-QC``) or only host queries (``ASTM-QUERY``) are
  stored but never routed: QC is not a patient result (DOMAIN.md §4.6).
- ``control_id`` in the store: ``<serial>/<H-14>/<H-3>`` (ASTM; a digest of
  the message when H-3 is empty) or
  ``<serial>/<HDR.creation_dttm>/<HDR.control_id>/<digest>`` (POCT1-A), because
  analysers restart their counters per session or power cycle; a resend of
  the same message is acknowledged again and not stored twice (POCT1-A ids
  also carry a digest of the message: devices restart numbering per
  conversation).
- Identity: the listener binds the peer to a system (its allow-list); every
  serial number a message names (header, result device, QC run) must be a
  registered, enabled instrument of that system, otherwise the message is
  rejected with ``INSTRUMENT-UNKNOWN`` / ``INSTRUMENT-NOT-PERMITTED`` /
  ``INSTRUMENT-DISABLED``; an analysis the instrument is not registered for
  gives ``INSTRUMENT-ANALYSIS-NOT-REGISTERED``.
- Answers: ASTM has no application-level negative acknowledgement (E1381
  only acknowledges frames), so a rejected ASTM message is stored as
  rejected and its last frame is still ACKed after the commit; the rejection
  is logged (``instruments.astm_rejected``) and visible in the console.
  POCT1-A gets ACK AA after commit, or ACK AE whose text lists the rule codes.
- Replay (the console): :meth:`InstrumentPipeline.evaluate` judges a stored
  message again with the registry and QC state as they are now, writing and
  remembering nothing; the console stores it with ``store_reevaluation``,
  :meth:`InstrumentPipeline.store_qc` adds its QC runs in the same
  transaction, and :meth:`InstrumentPipeline.note_qc` updates the QC cache
  after the commit. Nothing is sent to the device: its conversation is over.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import orjson

from adapters.astm.e1394 import build_records, parse_message
from adapters.astm.records import AstmParseError
from adapters.astm.server import AstmReply
from adapters.poct1a.build import LOCK, Directive, Operator, OperatorList
from adapters.poct1a.xml import DEFAULT_MAX_BYTES, PoctXmlError
from adapters.poct1a.xml import parse_message as parse_poct
from mappings.astm.host_query import answer_records, query_from_record
from mappings.astm.to_fhir import DEFAULT_QC_PATTERN, astm_to_bundle
from mappings import systems
from mappings.issue import Issue, rejects
from mappings.poct1a.to_fhir import poct_to_bundle

from .. import logging as log_setup
from ..metrics import Metrics
from ..routing import Router
from ..store import MessageRecord, MessageWriter, StoreUnavailable
from .orders import open_orders_for
from .qc import QcRun, normalise
from .registry import InstrumentInfo, Registry

log = log_setup.get("labgate.instruments")

DUPLICATE_CONFLICT = Issue(
    "error", "DUPLICATE-CONTROL-ID-CONFLICT", "HDR",
    "A different message with this control id was already received from this instrument",
    "En annen melding med samme kontroll-id er allerede mottatt fra dette instrumentet")
MAX_AE_TEXT = 480
SEEN_EVERY_S = 30.0


def _issue(code: str, location: str, text: str, text_nb: str) -> Issue:
    return Issue("error", code, location, text, text_nb)


def unknown(serial: str | None) -> Issue:
    if not serial:
        return _issue("INSTRUMENT-UNKNOWN", "device", "The message does not identify the instrument",
                      "Meldingen sier ikke hvilket instrument den kommer fra")
    return _issue("INSTRUMENT-UNKNOWN", "device", f"Instrument {serial} is not registered",
                  f"Instrument {serial} er ikke registrert")


def not_permitted(serial: str) -> Issue:
    return _issue("INSTRUMENT-NOT-PERMITTED", "device",
                  f"This connection may not post results for instrument {serial}",
                  f"Denne forbindelsen kan ikke sende resultater for instrument {serial}")


def disabled(serial: str) -> Issue:
    return _issue("INSTRUMENT-DISABLED", "device", f"Instrument {serial} is disabled",
                  f"Instrument {serial} er deaktivert")


def analysis_not_registered(serial: str, code: str) -> Issue:
    return _issue("INSTRUMENT-ANALYSIS-NOT-REGISTERED", "code",
                  f"Instrument {serial} is not registered for analysis {code}",
                  f"Instrument {serial} er ikke registrert for analysen {code}")


@dataclass(slots=True)
class Outcome:
    """What happened to one message: stored status and verdict."""
    status: str
    issues: list[Issue]
    message_id: int | None = None
    duplicate: bool = False
    answer_text: str | None = None   # a duplicate's stored AE text, replayed as it was

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"

    def ae_text(self) -> str:
        if self.answer_text is not None:
            return self.answer_text
        text = "; ".join(f"{i.code}: {i.text}" for i in self.issues if i.rejects)
        return text[:MAX_AE_TEXT]


@dataclass(slots=True)
class Evaluation:
    """One instrument message judged now: the record storing it would write
    and what follows the commit. Nothing is written or remembered."""
    record: MessageRecord
    issues: list[Issue]
    instrument: InstrumentInfo | None = None
    qc_events: list[dict] = field(default_factory=list)
    queries: list = field(default_factory=list)   # ASTM Q records to answer after the commit

    @property
    def instrument_ok(self) -> bool:
        return self.instrument is not None and not any(
            i.code.startswith("INSTRUMENT-") for i in self.issues)


class CannotReevaluate(Exception):
    """A stored message that cannot be judged again (the text says why)."""


def _answer(outcome_status: str, issues: list[Issue]) -> bytes:
    """What the device is told, as stored in ``message.ack``: b"AA", or b"AE " + text.
    A resend is answered from this, never from a new evaluation."""
    if outcome_status != "rejected":
        return b"AA"
    return b"AE " + Outcome(outcome_status, issues).ae_text().encode()


class InstrumentPipeline:
    """Shared by every ASTM and POCT1-A listener of one gateway."""

    def __init__(self, *, writer: MessageWriter, router: Router, registry: Registry,
                 validator, metrics: Metrics, pool, gateway_name: str = "LABGATE",
                 qc_material_pattern: str | None = None, lock_directive: str = LOCK):
        self._writer = writer
        self._router = router
        self.registry = registry
        self._validator = validator   # gateway.validator.Validator
        self._metrics = metrics
        self._pool = pool
        self._name = gateway_name
        self._qc_pattern = qc_material_pattern or DEFAULT_QC_PATTERN
        self._lock = lock_directive
        self._hello_serial: OrderedDict[str, str] = OrderedDict()   # POCT1-A peer -> serial
        self._seen_at: dict[str, float] = {}

    # -- ASTM -------------------------------------------------------------------
    async def astm_message(self, raw: bytes, system: str, peer: str) -> AstmReply | None:
        """One E1394 message (H..L) from ``peer`` acting as ``system``."""
        ev = self._judge_astm(raw, system, peer, datetime.now(timezone.utc))
        outcome = await self._commit(ev, system)
        if outcome.rejected:
            self._log_astm_rejected(system, peer, outcome.issues)
        if ev.queries:
            return await self._answer_queries(ev.queries, ev.instrument)
        return None

    def _judge_astm(self, raw: bytes, system: str, peer: str | None,
                    received: datetime) -> Evaluation:
        try:
            msg = parse_message(raw)
        except AstmParseError as e:
            issue = _issue("ASTM-PARSE-ERROR", "H", f"Not an ASTM E1394 message: {e}",
                           "Ikke en ASTM E1394-melding")
            return Evaluation(self._record("astm", raw, system, peer, None, "ASTM", None,
                                           [issue], received), [issue])
        serial = _astm_serial(msg)
        inst, issues = self._check_instrument(serial, system)
        bundle, qc_events = None, []
        if inst is not None:
            bundle, map_issues, qc_events = astm_to_bundle(
                msg, code_map=self.registry.code_maps.get(inst.code_map, {}), device_id=serial,
                qc_material_pattern=self._qc_pattern)
            issues += map_issues
            issues += self._check_content(inst, system, bundle, qc_events, serial,
                                          named=_astm_named_serials(msg))
        kind = _kind("ASTM", bundle, qc_events, bool(msg.queries))
        header = msg.header
        # H-3 is often empty: then the content digest stands in, so only an
        # identical resend counts as a duplicate.
        own_id = header.text(3) or "sha256:" + hashlib.sha256(raw).hexdigest()[:24]
        control = f"{serial}/{header.text(14)}/{own_id}" if serial else None
        # Queries are answered unless the instrument or mapping checks reject
        # (a validation finding on results in the same message does not stop it).
        answerable = bool(msg.queries) and inst is not None and not rejects(issues)
        ev = self._judge("astm", raw, system, peer, inst, control, kind, bundle, issues,
                         qc_events, received)
        if answerable:
            ev.queries = list(msg.queries)
        return ev

    def _log_astm_rejected(self, system: str, peer: str, issues: list[Issue]) -> None:
        # E1381 has no application NAK: the frame was ACKed; this line and the
        # stored verdict are how the rejection becomes visible.
        log.warning("instruments.astm_rejected", system=system, peer=peer,
                    codes=sorted({i.code for i in issues if i.rejects}))

    async def _answer_queries(self, records: list, inst: InstrumentInfo) -> AstmReply:
        queries = [query_from_record(q) for q in records]
        specimens = [s for q in queries for s in q.specimen_ids]
        patients = [p for q in queries for p in q.patient_ids]
        orders = await open_orders_for(self._pool, specimens, patients)
        to_code = _reverse(self.registry.code_maps.get(inst.code_map, {}))
        for order in orders:
            order["tests"] = [to_code[t] for t in order["tests"] if t in to_code]
        orders = [o for o in orders if o["tests"]]
        records = answer_records(queries, orders, sender=self._name)
        log.info("instruments.host_query", instrument=inst.serial, queries=len(queries),
                 orders=len(orders))
        return AstmReply([build_records(records)])

    # -- POCT1-A ---------------------------------------------------------------
    async def poct_hello(self, message, system: str, peer: str) -> list:
        """HEL.R01: remember the device's serial; push operators and lock directives."""
        serial = (message.value("DEV.serial_id") or "").strip()
        if serial:
            self._hello_serial[peer] = serial
            self._hello_serial.move_to_end(peer)
            while len(self._hello_serial) > 10_000:
                self._hello_serial.popitem(last=False)
        inst, issues = self._check_instrument(serial or None, system)
        if inst is None or issues:
            log.warning("instruments.poct_hello_refused", system=system, peer=peer,
                        codes=sorted({i.code for i in issues}))
            return []
        await self._seen(inst.serial)
        ops = tuple(Operator(o.operator_id, o.name, o.permission_level)
                    for o in self.registry.certified_operators(inst))
        pushes: list = [OperatorList(ops)]
        for analysis in self.registry.locked_analyses(inst.serial):
            pushes.append(Directive(self._lock, (("DTV.target_cd", analysis),)))
        log.info("instruments.poct_hello", instrument=inst.serial, operators=len(ops),
                 locks=len(pushes) - 1)
        return pushes

    async def poct_observation(self, message, system: str, peer: str) -> tuple[bool, str | None]:
        """OBS.R01/R02: returns (accepted, AE text) after the commit."""
        serial = (message.value("DEV.serial_id") or "").strip() or self._hello_serial.get(peer)
        ev = self._judge_poct(message, system, peer, serial, datetime.now(timezone.utc))
        outcome = await self._commit(ev, system)
        if outcome.rejected:
            return False, outcome.ae_text()
        return True, None

    def _judge_poct(self, message, system: str, peer: str | None, serial: str | None,
                    received: datetime) -> Evaluation:
        inst, issues = self._check_instrument(serial, system)
        bundle, qc_events = None, []
        if inst is not None:
            bundle, map_issues, qc_events = poct_to_bundle(
                message, code_map=self.registry.code_maps.get(inst.code_map, {}), device_id=serial)
            issues += map_issues
            issues += self._check_content(inst, system, bundle, qc_events, serial)
        kind = _kind("POCT1A", bundle, qc_events, False)
        control = _poct_control_id(serial, message) if serial else None
        return self._judge("poct1a", message.raw, system, peer, inst, control, kind, bundle,
                           issues, qc_events, received)

    # -- replay (the console) ---------------------------------------------------
    def evaluate(self, protocol: str, raw: bytes, system: str, *, peer: str | None = None,
                 control_id: str | None = None, received: datetime | None = None) -> Evaluation:
        """What storing this stored instrument message now would store (parse,
        map, instrument checks, validation with the current registry and QC
        state, route), without writing it, remembering its history or telling
        the device anything. ``control_id`` is the stored one: a POCT1-A
        observation without ``DEV.serial_id`` was identified by its
        conversation's HEL, and that serial survives only there."""
        received = received or datetime.now(timezone.utc)
        if protocol == "astm":
            return self._judge_astm(raw, system, peer, received)
        if protocol != "poct1a":
            raise CannotReevaluate(f"not an instrument protocol: {protocol}")
        try:
            message = parse_poct(raw, max_bytes=max(len(raw), DEFAULT_MAX_BYTES))
        except PoctXmlError as e:
            raise CannotReevaluate(f"the stored POCT1-A message does not parse ({e.code})") from None
        serial = ((message.value("DEV.serial_id") or "").strip()
                  or _poct_serial_from_control_id(control_id, message))
        return self._judge_poct(message, system, peer, serial, received)

    async def store_qc(self, conn, message_id: int, ev: Evaluation) -> list[tuple[QcRun, bool | None]]:
        """A re-evaluated message's QC runs, in the caller's transaction (once
        per message and position, as on receipt; only when its instrument
        checks pass). Give the result to :meth:`note_qc` after the commit."""
        if not (ev.instrument_ok and ev.qc_events):
            return []
        return await self._insert_qc(conn, message_id, ev.qc_events, ev.instrument.serial,
                                     ev.record.received_at)

    def note_qc(self, runs: list[tuple[QcRun, bool | None]]) -> None:
        """After the commit: newly stored QC runs update the QC state cache."""
        for run, passed in runs:
            self.registry.note_qc(run, passed)
            log.info("instruments.qc_recorded", instrument=run.instrument, analysis=run.analysis,
                     result={True: "pass", False: "fail", None: "not-judged"}[passed])

    # -- shared -------------------------------------------------------------------
    def _check_instrument(self, serial: str | None, system: str) -> tuple[InstrumentInfo | None, list[Issue]]:
        inst = self.registry.instruments.get(serial) if serial else None
        if inst is None:
            return None, [unknown(serial)]
        if inst.system != system:
            return None, [not_permitted(serial)]
        if not inst.enabled:
            return None, [disabled(serial)]
        return inst, []

    def _check_content(self, inst: InstrumentInfo, system: str, bundle: dict | None,
                       qc_events: list[dict], serial: str | None,
                       named: tuple[str, ...] = ()) -> list[Issue]:
        """Every serial named must be this system's; every analysis registered."""
        issues: list[Issue] = []
        serials = set(_device_serials(bundle)) | set(named)
        serials.update(e.get("instrument_serial") or e.get("device_serial") for e in qc_events)
        serials.discard(None)
        for other in sorted(serials - {inst.serial}):
            problems = self._check_instrument(other, system)[1]
            issues += problems
        codes = set(_observation_codes(bundle))
        codes.update(normalise(e, serial=serial, received=datetime.now(timezone.utc)).analysis
                     for e in qc_events)
        codes.discard(None)
        for code in sorted(codes - inst.analyses):
            issues.append(analysis_not_registered(inst.serial, code))
        return issues

    def _judge(self, protocol, raw, system, peer, inst, control, kind, bundle, issues,
               qc_events, received) -> Evaluation:
        patient_results = kind in ("ASTM", "POCT1A-OBS") and bool(_observation_codes(bundle))
        history = None
        if patient_results and not rejects(issues):
            # Results from registered instruments are judged with the gateway's
            # own QC and operator records.
            checked = self._validator.check(bundle, system, qc_state=self.registry.qc_state,
                                            operator_certified=self.registry.operator_certified)
            issues, history = issues + checked.issues, checked.history
        record = self._record(protocol, raw, system, peer, control, kind, bundle, issues,
                              received, route=patient_results, history=history)
        return Evaluation(record, issues, inst, qc_events)

    def _record(self, protocol, raw, system, peer, control, kind, bundle, issues, received,
                route: bool = False, history=None) -> MessageRecord:
        if rejects(issues):
            status, dests = "rejected", []
        elif route:
            dests = self._router.destinations(system, kind)
            status = "accepted" if dests else "unrouted"
        else:
            status, dests = "accepted", []
        return MessageRecord(
            source=system, protocol=protocol, peer=peer, message_type=kind, control_id=control,
            sha256=hashlib.sha256(raw).digest(), raw=raw,
            bundle_json=orjson.dumps(bundle).decode() if bundle is not None else None,
            verdict_json=orjson.dumps([i.to_dict() for i in issues]).decode(),
            status=status, ack=_answer(status, issues), received_at=received, destinations=dests,
            history=history)

    async def _commit(self, ev: Evaluation, system: str) -> Outcome:
        """Store a received message, then what follows its commit: contact,
        QC runs, counters."""
        outcome = await self._store(ev.record, ev.issues)
        if ev.instrument_ok:
            await self._seen(ev.instrument.serial)
            if ev.qc_events and outcome.message_id is not None:
                async with self._pool.acquire() as conn:
                    runs = await self._insert_qc(conn, outcome.message_id, ev.qc_events,
                                                 ev.instrument.serial, ev.record.received_at)
                self.note_qc(runs)
        self._count(system, ev.record.message_type, outcome)
        return outcome

    async def _store(self, record: MessageRecord, issues: list[Issue]) -> Outcome:
        status = record.status
        try:
            result = await self._writer.write(record)
        except StoreUnavailable:    # no acknowledgement: the analyser resends
            self._metrics.store_failures.labels(record.source).inc()
            raise
        if not result.duplicate:
            self._validator.remember(record.history)   # committed: now it is history
            return Outcome(status, issues, result.message_id)
        if result.same_content:
            stored = bytes(result.stored_ack or b"AA")
            if stored.startswith(b"AE"):
                return Outcome("rejected", [], result.message_id, duplicate=True,
                               answer_text=stored[3:].decode("utf-8", "replace"))
            return Outcome("accepted", [], result.message_id, duplicate=True)
        record.status, record.destinations = "rejected", []
        record.ack = _answer("rejected", [DUPLICATE_CONFLICT])
        record.verdict_json = orjson.dumps([DUPLICATE_CONFLICT.to_dict()]).decode()
        record.duplicate_of = result.message_id
        await self._writer.write(record)
        return Outcome("rejected", [DUPLICATE_CONFLICT], None)

    async def _insert_qc(self, conn, message_id: int, events: list[dict], serial: str,
                         received: datetime) -> list[tuple[QcRun, bool | None]]:
        """Insert a stored message's QC runs; returns the runs new to the table."""
        new = []
        for seq, event in enumerate(events, 1):
            run = normalise(event, serial=serial, received=received)
            passed, target = self.registry.targets.judge(run)
            inserted = await conn.fetchval(
                "INSERT INTO qc_result (message_id, seq, instrument, analysis, material, lot,"
                " level, value, value_text, unit, target_low, target_high, passed, operator,"
                " performed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"
                " ON CONFLICT (message_id, seq) DO NOTHING RETURNING id",
                message_id, seq, run.instrument or serial, run.analysis, run.material, run.lot,
                run.level, run.value, run.value_text, run.unit,
                target.low if target else None, target.high if target else None, passed,
                run.operator, run.performed_at)
            if inserted is not None:
                new.append((_with_instrument(run, serial), passed))
        return new

    async def _seen(self, serial: str) -> None:
        """Record contact; at most every SEEN_EVERY_S per instrument (it is for display)."""
        now = time.monotonic()
        if now - self._seen_at.get(serial, -SEEN_EVERY_S) < SEEN_EVERY_S:
            return
        self._seen_at[serial] = now
        await self._pool.execute("UPDATE instrument SET last_seen = now() WHERE serial = $1", serial)

    def _count(self, system: str, kind: str, outcome: Outcome) -> None:
        """As the HL7 pipeline counts: a resend only as a duplicate."""
        if outcome.duplicate:
            self._metrics.duplicates.labels(system).inc()
            return
        self._metrics.received.labels(system, kind).inc()
        if outcome.rejected:
            self._metrics.rejected.labels(system, kind).inc()
        else:
            self._metrics.accepted.labels(system, kind).inc()


def _with_instrument(run: QcRun, serial: str) -> QcRun:
    return run if run.instrument else replace(run, instrument=serial)


def _poct_suffix(message) -> str:
    """What follows the serial in a POCT1-A store control id."""
    hdr_time = (message.value("HDR.creation_dttm") or "").strip()
    # Devices number messages per conversation, so the id alone repeats
    # across sessions: the digest makes only an identical resend a duplicate.
    digest = hashlib.sha256(message.raw).hexdigest()[:24]
    return f"/{hdr_time}/{message.control_id or ''}/{digest}"


def _poct_control_id(serial: str, message) -> str:
    return serial + _poct_suffix(message)


def _poct_serial_from_control_id(control_id: str | None, message) -> str | None:
    """The serial a stored POCT1-A message was received under (from its
    conversation's HEL when the message names none): the store control id
    is ``<serial>`` + the message's own suffix."""
    suffix = _poct_suffix(message)
    if control_id and control_id.endswith(suffix) and len(control_id) > len(suffix):
        return control_id[:-len(suffix)]
    return None


def _astm_serial(msg) -> str | None:
    """H-5 third component, else the first result's R-14 serial."""
    serial = msg.header.get(5, 3).strip()
    if serial:
        return serial
    for _, _, result in msg.results():
        comps = [c.strip() for c in result.record.components(14)]
        if len(comps) >= 2 and comps[1]:
            return comps[1]
        if comps and comps[0]:
            return comps[0]
    return None


def _astm_named_serials(msg) -> tuple[str, ...]:
    """Every serial the message names: H-5.3 and each R-14 (``model^serial`` or ``serial``)."""
    out = [msg.header.get(5, 3).strip()]
    for _, _, result in msg.results():
        comps = [c.strip() for c in result.record.components(14)]
        out.append(comps[1] if len(comps) >= 2 and comps[1] else comps[0] if comps else "")
    return tuple(s for s in out if s)


def _kind(prefix: str, bundle: dict | None, qc_events: list, query: bool) -> str:
    if _observation_codes(bundle) or not (qc_events or query):
        return "ASTM" if prefix == "ASTM" else "POCT1A-OBS"
    if qc_events:
        return f"{prefix}-QC"
    return "ASTM-QUERY"


def _resources(bundle: dict | None, rtype: str):
    for entry in (bundle or {}).get("entry", []):
        res = entry.get("resource") or {}
        if res.get("resourceType") == rtype:
            yield res


def _observation_codes(bundle: dict | None) -> list[str]:
    out = []
    for obs in _resources(bundle, "Observation"):
        for c in obs.get("code", {}).get("coding", []):
            if c.get("system") == systems.NLK:
                out.append(c.get("code"))
    return out


def _device_serials(bundle: dict | None) -> list[str]:
    return [i.get("value") for dev in _resources(bundle, "Device")
            for i in dev.get("identifier", []) if i.get("value")]


def _reverse(code_map: dict[str, dict]) -> dict[str, str]:
    """NLK code -> instrument code (unqualified codes preferred)."""
    out: dict[str, str] = {}
    for code, row in sorted(code_map.items(), key=lambda kv: ":" in kv[0]):
        out.setdefault(row["nlk"], code.split(":", 1)[-1])
    return out
