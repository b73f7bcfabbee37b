"""ASTM E1394 messages -> a FHIR R4 transaction Bundle (plain dicts) and QC events.

``astm_to_bundle`` maps one parsed message (DOMAIN.md §3.3):

- each P record with patient orders gives a Patient from P-3 (falling back
  to P-4, P-5); FNR, D-nummer, H-nummer and FH-nummer are recognised by
  their digits and check digits, anything else is a local id;
- each patient O record gives a Specimen: id O-3, collection time O-8,
  type O-16 (``type^source``);
- each R record under it gives an Observation: code via the per-sender
  ``code_map`` (instrument code R-3 -> NLK/LOINC/UCUM unit), value R-4 with
  unit R-5, reference range R-6, abnormal flag R-7 -> interpretation,
  status R-9, effective time = specimen collection time O-8 (never the
  analysis time: a missing O-8 stays missing so the COLLECTION-TIME-MISSING
  rule sees it), analysis time R-13 in the standard
  ``observation-analysis-date-time`` extension, issued = R-13,
  performer = operator R-11, device from R-14 or the H-5 serial, notes
  from C records;
- QC runs are never patient Observations (§4.6): when H-12 or O-12 is
  ``Q``, or O-3 / O-16 matches ``qc_material_pattern``, the results become
  QC event dicts in the third return value.

``msg`` is an ``AstmMessage`` as ``adapters.astm.e1394.parse_message``
returns it; this module only reads its attributes (mappings do not import
adapters). Ids are deterministic ``urn:uuid`` values (uuid5 of a fixed
namespace, the sender, the control id / message time, a digest of the
records and the record's position), so a resent message maps to the same
bundle.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field

from mappings import systems
from mappings.fhir_strings import plain_spaces
from mappings.hl7v2.timestamps import to_fhir_date, to_fhir_datetime, to_fhir_instant
from mappings.identifiers import (DNR, FHNR, FNR, HNR, classify_person_number,
                                  person_check_digits)
from mappings.issue import Issue
from mappings.values import parse_number, same_unit, ucum

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:labgate:astm")
DEFAULT_TZ = systems.DEFAULT_TZ
#: O-3 / O-16 values that mark control material (configurable per sender).
DEFAULT_QC_PATTERN = r"(?i)^\s*(qc|ctrl|control|kontroll|ci-lot)\b"
#: Standard extension (FHIR extensions pack) for the time the analysis was done.
ANALYSIS_TIME_EXT = systems.ANALYSIS_TIME_EXT

UNKNOWN_CODE = "ASTM-UNKNOWN-TEST-CODE"
PATIENT_ID_MISSING = "ASTM-PATIENT-ID-MISSING"
PATIENT_ID_CHECKSUM = "ASTM-PATIENT-ID-CHECKSUM"
VALUE_MISSING = "ASTM-VALUE-MISSING"
VALUE_NOT_NUMERIC = "ASTM-VALUE-NOT-NUMERIC"
UNIT_MISMATCH = "ASTM-UNIT-MISMATCH"
TIME_MISSING = "ASTM-COLLECTION-TIME-MISSING"
TIME_INVALID = "ASTM-DATETIME-INVALID"
FLAG_UNKNOWN = "ASTM-ABNORMAL-FLAG-UNKNOWN"
STATUS_UNKNOWN = "ASTM-RESULT-STATUS-UNKNOWN"
DEVICE_UNKNOWN = "ASTM-DEVICE-UNKNOWN"
NO_RESULTS = "ASTM-NO-RESULTS"

_PERSON_SYSTEMS = {FNR: systems.FNR, DNR: systems.DNR, FHNR: systems.FHNR}
_HNR_TYPE = {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.8327", "code": "HNR"}]}
# LIS02-A2 R-9 result status -> Observation.status [K].
_STATUS = {"F": "final", "R": "final", "V": "final", "Q": "final", "C": "corrected",
           "P": "preliminary", "S": "preliminary", "I": "registered", "X": "cancelled",
           "M": "final"}
# LIS02-A2 R-7 flags that are also v3-ObservationInterpretation codes.
_FLAGS = frozenset({"L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "U", "D", "B", "W"})
_SEX = {"M": "male", "F": "female", "U": "unknown", "O": "other"}
# O-16 specimen types that are volven 8351 codes or plain spellings of them.
_SPECIMEN_TYPES = {"B": ("B", "Blod"), "BLOOD": ("B", "Blod"), "P": ("P", "Plasma"),
                   "PLASMA": ("P", "Plasma"), "S": ("S", "Serum"), "SERUM": ("S", "Serum"),
                   "U": ("U", "Urin"), "URINE": ("U", "Urin")}
_RANGE = re.compile(r"^\s*([+-]?\d+(?:[.,]\d+)?)\s*(?:-|–|\.\.|to)\s*([+-]?\d+(?:[.,]\d+)?)\s*$")
_BOUND = re.compile(r"^\s*(<=|>=|<|>)\s*([+-]?\d+(?:[.,]\d+)?)\s*$")
_LOT = re.compile(r"(?i)\blot[\s:#-]*([A-Za-z0-9][A-Za-z0-9.-]*)")


@dataclass
class _Ctx:
    """What one mapping run accumulates."""
    msg: object
    code_map: dict[str, dict]
    qc_pattern: re.Pattern
    tz: str
    key: str
    sender: str
    serial: str | None
    issues: list[Issue] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)
    qc: list[dict] = field(default_factory=list)
    devices: dict[str, str] = field(default_factory=dict)   # serial -> urn

    def issue(self, severity: str, code: str, location: str, text: str, text_nb: str = "") -> None:
        self.issues.append(Issue(severity, code, location, text, text_nb))

    def urn(self, *parts: object) -> str:
        return f"urn:uuid:{uuid.uuid5(NAMESPACE, '|'.join(map(str, (self.key, *parts))))}"

    def time(self, raw: str, location: str, instant: bool = False) -> str | None:
        raw = raw.strip()
        if not raw:
            return None
        value = (to_fhir_instant if instant else to_fhir_datetime)(raw, self.tz)
        if value is None:
            self.issue("warning", TIME_INVALID, location, "not a readable ASTM date-time",
                       "ikke et gyldig ASTM-tidspunkt")
        return value


def astm_to_bundle(msg, *, code_map: dict[str, dict], device_id: str | None = None,
                   qc_material_pattern: str = DEFAULT_QC_PATTERN,
                   default_tz: str = DEFAULT_TZ) -> tuple[dict, list[Issue], list[dict]]:
    """Map one parsed ASTM message.

    ``code_map``: instrument test code -> ``{"nlk": "NPU19748", "display":
    "P-C-Reaktivt protein", "loinc": "1988-5", "unit": "mg/L"}``; optional
    ``"units"``: further instrument spellings of the same unit. ``device_id``:
    the analyser's serial when neither R-14 nor H-5 names it.
    Returns (transaction Bundle, issues, QC events).
    """
    header = msg.header
    sender = header.get(5).strip() or "astm"
    serial = header.get(5, 3).strip() or (device_id or "").strip() or None
    ctx = _Ctx(msg, code_map, re.compile(qc_material_pattern), default_tz,
               _message_key(msg), sender, serial)
    for code, text in getattr(msg, "problems", []):
        ctx.issue("warning", code, "", text)
    qc_message = msg.processing_id == "Q"
    n_result = 0
    for pi, patient in enumerate(msg.patients, 1):
        patient_urn = None
        for oi, order in enumerate(patient.orders, 1):
            if qc_message or _is_qc_order(ctx, order):
                for result in order.results:
                    n_result += 1
                    _qc_event(ctx, order, result, n_result)
                continue
            if patient_urn is None:
                patient_urn = _patient(ctx, patient, pi)
            specimen_urn, when = _specimen(ctx, order, patient_urn, pi, oi)
            for result in order.results:
                n_result += 1
                _observation(ctx, order, result, n_result, patient_urn, specimen_urn, when)
    if n_result == 0 and not msg.queries:
        ctx.issue("information", NO_RESULTS, "", "the message holds no results")
    bundle = {"resourceType": "Bundle", "type": "transaction"}
    created = ctx.time(header.get(14), "H-14", instant=True)
    if created:
        bundle["timestamp"] = created
    if ctx.entries:
        bundle["entry"] = ctx.entries
    plain_spaces(bundle)
    return bundle, ctx.issues, ctx.qc


def _message_key(msg) -> str:
    """Sender, control id, message time and a digest of every record's fields."""
    records = [msg.header.fields]
    for p, o, r in msg.results():
        records += [p.record.fields if p.record else None,
                    o.record.fields if o.record else None, r.record.fields]
    digest = hashlib.sha256(repr(records).encode("utf-8", "replace")).hexdigest()[:16]
    h = msg.header
    return "|".join((h.text(5), h.text(3), h.text(14), digest))


def _entry(urn: str, resource: dict, if_none_exist: str | None = None) -> dict:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": urn, "resource": resource, "request": request}


def _is_qc_order(ctx: _Ctx, order) -> bool:
    rec = order.record
    if rec is None:
        return False
    if rec.get(12).strip().upper() == "Q":
        return True
    return bool(ctx.qc_pattern.search(rec.text(3)) or ctx.qc_pattern.search(rec.get(16)))


# patients and specimens --------------------------------------------------------

def _patient(ctx: _Ctx, patient, pi: int) -> str | None:
    rec = patient.record
    loc = f"P[{pi}]"
    pid, field_no = "", 3
    if rec is not None:
        for field_no in (3, 4, 5):
            pid = rec.get(field_no).strip()
            if pid:
                break
    if not pid:
        ctx.issue("error", PATIENT_ID_MISSING, f"{loc}-3", "the patient result has no patient id",
                  "pasient-id mangler")
        return None
    identifier = _person_identifier(ctx, pid, f"{loc}-{field_no}")
    resource: dict = {"resourceType": "Patient", "identifier": [identifier]}
    family, given = rec.get(6).strip(), [g.strip() for g in rec.components(6)[1:3] if g.strip()]
    if family or given:
        resource["name"] = [{k: v for k, v in (("family", family), ("given", given)) if v}]
    birth = to_fhir_date(rec.get(8)) if rec.get(8).strip() else None
    if birth:
        resource["birthDate"] = birth
    sex = _SEX.get(rec.get(9).strip().upper())
    if sex:
        resource["gender"] = sex
    urn = ctx.urn("Patient", identifier["system"], pid)
    ctx.entries.append(_entry(urn, resource, f"identifier={identifier['system']}|{pid}"))
    return urn


def _person_identifier(ctx: _Ctx, pid: str, loc: str) -> dict:
    kind, _synthetic = classify_person_number(pid)
    if kind in _PERSON_SYSTEMS or kind == HNR:
        if person_check_digits(pid[:9]) == pid[9:]:
            if kind == HNR:
                return {"type": _HNR_TYPE, "system": systems.HNR, "value": pid,
                        "assigner": {"display": ctx.sender}}
            return {"system": _PERSON_SYSTEMS[kind], "value": pid}
        ctx.issue("warning", PATIENT_ID_CHECKSUM, loc,
                  "11-digit patient id fails the mod-11 check; kept as a local id",
                  "11-sifret pasient-id har feil kontrollsiffer; brukt som lokal id")
    return {"system": systems.local_system("patient", ctx.sender), "value": pid}


def _specimen(ctx: _Ctx, order, patient_urn: str | None, pi: int,
              oi: int) -> tuple[str | None, str | None]:
    rec = order.record
    loc = f"P[{pi}]O[{oi}]"
    when = ctx.time(rec.get(8), f"{loc}-8") if rec is not None else None
    if rec is None:
        return None, None
    resource: dict = {"resourceType": "Specimen"}
    sid = rec.get(3).strip()
    system = systems.local_system("specimen", ctx.sender)
    if sid:
        resource["identifier"] = [{"system": system, "value": sid}]
    stype, source = rec.get(16).strip(), rec.get(16, 2).strip()
    if stype:
        concept: dict = {"text": " ".join(p for p in (stype, source) if p)}
        known = _SPECIMEN_TYPES.get(stype.upper())
        if known:
            concept["coding"] = [{"system": systems.SPECIMEN_TYPE_8351, "code": known[0],
                                  "display": known[1]}]
        resource["type"] = concept
    if patient_urn:
        resource["subject"] = {"reference": patient_urn}
    collection: dict = {}
    if when:
        collection["collectedDateTime"] = when
    collector = rec.get(11).strip()
    if collector:
        collection["collector"] = {"identifier": {
            "system": systems.local_system("operator", ctx.sender), "value": collector}}
    if collection:
        resource["collection"] = collection
    received = ctx.time(rec.get(15), f"{loc}-15", instant=True)
    if received:
        resource["receivedTime"] = received
    notes = _notes(order.comments)
    if notes:
        resource["note"] = notes
    urn = ctx.urn("Specimen", pi, oi)
    ctx.entries.append(_entry(urn, resource, f"identifier={system}|{sid}" if sid else None))
    return urn, when


def _notes(comments) -> list[dict]:
    out = []
    for c in comments:
        text = " ".join(p.strip() for p in c.components(4) if p.strip())
        if text:
            out.append({"text": text})
    return out


# observations --------------------------------------------------------------------

def _lookup(ctx: _Ctx, result, loc: str) -> dict | None:
    code = result.test_code
    row = ctx.code_map.get(code)
    if row is None or not row.get("nlk"):
        ctx.issue("error", UNKNOWN_CODE, f"{loc}-3",
                  f"test code {code!r} is not in this instrument's code map",
                  f"analysekode {code!r} finnes ikke i kodeverket for instrumentet")
        return None
    return row


def _observation(ctx: _Ctx, order, result, n: int, patient_urn: str | None,
                 specimen_urn: str | None, when: str | None) -> None:
    rec = result.record
    loc = f"R[{n}]"
    row = _lookup(ctx, result, loc)
    value = _value(ctx, rec, loc, row)
    if row is None or value is None:
        return
    resource: dict = {
        "resourceType": "Observation",
        "status": _status(ctx, rec, loc),
        "category": [{"coding": [{"system": systems.OBS_CATEGORY, "code": "laboratory"}]}],
        "code": _code(ctx, result.test_code, row),
        **value,
    }
    if patient_urn:
        resource["subject"] = {"reference": patient_urn}
    if when is None:
        ctx.issue("warning", TIME_MISSING, f"{loc}-8",
                  "no specimen collection time (O-8); left empty, not replaced by the "
                  "analysis time", "prøvetakingstidspunkt mangler")
    if when:
        resource["effectiveDateTime"] = when
    # Unreadable R-13 is reported once, below, for ``issued``.
    analysed = to_fhir_datetime(rec.get(13).strip(), ctx.tz) if rec.get(13).strip() else None
    if analysed:
        resource["extension"] = [{"url": ANALYSIS_TIME_EXT, "valueDateTime": analysed}]
    issued = ctx.time(rec.get(13), f"{loc}-13", instant=True)
    if issued:
        resource["issued"] = issued
    operator = rec.get(11).strip()
    if operator:
        resource["performer"] = [{"identifier": {
            "system": systems.local_system("operator", ctx.sender), "value": operator}}]
    _interpretation_and_range(ctx, rec, loc, resource, value)
    notes = _notes(result.comments)
    if notes:
        resource["note"] = notes
    if specimen_urn:
        resource["specimen"] = {"reference": specimen_urn}
    device = _device(ctx, rec)
    if device:
        resource["device"] = {"reference": device}
    ctx.entries.append(_entry(ctx.urn("Observation", n), resource))


def _code(ctx: _Ctx, code: str, row: dict) -> dict:
    codings = [{"system": systems.NLK, "code": row["nlk"]}]
    if row.get("display"):
        codings[0]["display"] = row["display"]
    if row.get("loinc"):
        codings.append({"system": systems.LOINC, "code": row["loinc"]})
    codings.append({"system": systems.local_system("astm-test", ctx.sender), "code": code})
    concept: dict = {"coding": codings}
    if row.get("display"):
        concept["text"] = row["display"]
    return concept




def _value(ctx: _Ctx, rec, loc: str, row: dict | None) -> dict | None:
    """``{"valueQuantity": …}`` or ``{"valueString": …}``; None after an error."""
    raw = rec.get(4).strip()
    if not raw:
        ctx.issue("error", VALUE_MISSING, f"{loc}-4", "the result has no value",
                  "resultatverdi mangler")
        return None
    number = parse_number(raw)
    expected = (row or {}).get("unit")
    if number is None:
        if expected:
            ctx.issue("error", VALUE_NOT_NUMERIC, f"{loc}-4",
                      "R-4 is not a number but the code map gives a unit",
                      "resultatverdien er ikke et tall")
            return None
        return {"valueString": raw}
    unit = rec.get(5).strip()
    if row is not None and not same_unit(unit or None, row.get("unit"), row.get("units", ())):
        ctx.issue("error", UNIT_MISMATCH, f"{loc}-5",
                  f"unit {unit!r} differs from the code map's {expected!r}",
                  f"enheten {unit!r} avviker fra kodeverkets {expected!r}")
        return None
    comparator, number_value = number
    quantity: dict = {"value": number_value}
    if comparator:
        quantity["comparator"] = comparator
    code = ucum(expected) if expected else ucum(unit) if unit else None
    if code:
        quantity.update(unit=unit or code, system=systems.UCUM, code=code)
    return {"valueQuantity": quantity}


def _status(ctx: _Ctx, rec, loc: str) -> str:
    flag = rec.get(9).strip().upper()
    if not flag:
        return "final"
    status = _STATUS.get(flag)
    if status is None:
        ctx.issue("warning", STATUS_UNKNOWN, f"{loc}-9",
                  f"result status {flag!r} is not a LIS02-A2 code; status unknown")
        return "unknown"
    return status


def _interpretation_and_range(ctx: _Ctx, rec, loc: str, resource: dict, value: dict) -> None:
    flag = rec.get(7).strip().upper()
    if flag:
        if flag in _FLAGS:
            resource["interpretation"] = [{"coding": [
                {"system": systems.V3_INTERPRETATION, "code": flag}]}]
        else:
            ctx.issue("warning", FLAG_UNKNOWN, f"{loc}-7",
                      f"abnormal flag {flag!r} is not a LIS02-A2 code; kept as text")
            resource["interpretation"] = [{"text": flag}]
    text = rec.get(6).strip()
    if text:
        resource["referenceRange"] = [_range(text, value.get("valueQuantity"))]


def _range(text: str, quantity: dict | None) -> dict:
    out: dict = {"text": text}
    unit = {k: quantity[k] for k in ("unit", "system", "code") if k in quantity} if quantity else {}

    def q(v: str) -> dict:
        number = parse_number(v)
        return {"value": number[1], **unit} if number else {}

    m = _RANGE.match(text)
    if m:
        out["low"], out["high"] = q(m.group(1)), q(m.group(2))
        return out
    m = _BOUND.match(text)
    if m:
        out["high" if m.group(1).startswith("<") else "low"] = q(m.group(2))
    return out


def _device(ctx: _Ctx, rec) -> str | None:
    comps = [c.strip() for c in rec.components(14)]
    model = ctx.msg.header.get(5).strip()
    serial = None
    if len(comps) >= 2 and comps[1]:
        model, serial = comps[0] or model, comps[1]
    elif comps and comps[0]:
        serial = comps[0]
    serial = serial or ctx.serial
    if not serial:
        if "no-device" not in ctx.devices:
            ctx.devices["no-device"] = ""
            ctx.issue("warning", DEVICE_UNKNOWN, "H-5",
                      "the analyser is not identified (no R-14, no H-5 serial, no device_id)")
        return None
    if serial in ctx.devices:
        return ctx.devices[serial]
    system = systems.local_system("device-serial", model or "astm")
    device: dict = {"resourceType": "Device", "identifier": [{"system": system, "value": serial}]}
    if model:
        device["deviceName"] = [{"name": model, "type": "model-name"}]
    version = ctx.msg.header.get(5, 2).strip()
    if version:
        device["version"] = [{"value": version}]
    urn = ctx.urn("Device", system, serial)
    ctx.devices[serial] = urn
    ctx.entries.append(_entry(urn, device, f"identifier={system}|{serial}"))
    return urn


# QC ------------------------------------------------------------------------------

def _qc_event(ctx: _Ctx, order, result, n: int) -> None:
    rec = result.record
    loc = f"R[{n}]"
    row = _lookup(ctx, result, loc)
    orec = order.record
    material = orec.text(3) if orec is not None else ""
    raw = rec.get(4).strip()
    number = parse_number(raw) if raw else None
    comps = [c.strip() for c in rec.components(14)]
    serial = (comps[1] if len(comps) >= 2 and comps[1] else comps[0] if comps else "") or ctx.serial
    lot = _LOT.search(material)
    when = (ctx.time(rec.get(13), f"{loc}-13")
            or (ctx.time(orec.get(8), f"{loc}-8") if orec is not None else None)
            or ctx.time(ctx.msg.header.get(14), "H-14"))
    ctx.qc.append({
        "instrument_serial": serial or None,
        "instrument_model": ctx.msg.header.get(5).strip() or None,
        "instrument_code": result.test_code,
        "analysis_code": row["nlk"] if row else None,
        "value": number[1] if number else None,
        "comparator": number[0] if number else None,
        "value_text": raw,
        "unit": ucum(rec.get(5)) if rec.get(5).strip() else (row or {}).get("unit"),
        "reference_range": rec.get(6).strip() or None,
        "flag": rec.get(7).strip() or None,
        "status": rec.get(9).strip() or None,
        "material": material or None,
        "lot": lot.group(1) if lot else (orec.get(3, 2).strip() or None if orec else None),
        "operator": (rec.get(11).strip()
                     or (orec.get(11).strip() if orec is not None else "") or None),
        "time": when,
    })
