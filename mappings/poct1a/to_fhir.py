"""POCT1-A2 observations -> a FHIR R4 transaction Bundle (plain dicts) and QC events.

``poct_to_bundle`` maps one OBS.R01 / OBS.R02 (DOMAIN.md §3.1):

- each ``SVC`` with role ``OBS`` (patient service) gives one Patient (from
  ``PT.patient_id``; FNR/DNR/FH-nummer recognised) and one Observation per
  ``OBS``: code via the per-sender ``code_map``, ``valueQuantity`` from
  ``V``/``U`` (UCUM), ``effectiveDateTime`` and the analysis time (standard
  ``observation-analysis-date-time`` extension) from ``SVC.observation_dttm``
  (POCT1-A2 carries no separate collection time; point-of-care samples are
  analysed at collection),
  performer = ``OPR.operator_id`` (logical reference), device = the
  analyser, method = ``OBS.method_cd``, reagent name/lot/expiry as a note;
- each ``SVC`` with another role (``LQC`` liquid QC, ``CAL`` calibration …)
  and every OBS.R02 gives QC events, never patient Observations (§4.6).

``code_map`` maps the device's code (``OBS.observation_id`` V, optionally
qualified as ``"SN:code"``) to ``{"nlk": "NPU27300", "display": "B-HbA1c",
"loinc": "59261-8", "unit": "mmol/mol"}`` (``loinc``/``unit`` optional).

Ids are deterministic ``urn:uuid`` (uuid5 of device, control id and
position), so a resent message maps to the same bundle.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from mappings import systems
from mappings.fhir_strings import plain_spaces
from mappings.identifiers import DNR, FHNR, FNR, classify_person_number, person_check_digits
from mappings.issue import Issue

from . import source
from mappings.values import parse_datetime, parse_number, same_unit, ucum

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:labgate:poct1a")
DEFAULT_TZ = systems.DEFAULT_TZ
#: Standard extension (FHIR extensions pack) for the time the analysis was done.
ANALYSIS_TIME_EXT = systems.ANALYSIS_TIME_EXT
PATIENT_ROLES = frozenset({"OBS"})
# Operator ids are the gateway's own (it pushes them to devices in OPL.R01).
OPERATOR_SYSTEM = systems.local_system("operator", "poct1a")

UNKNOWN_CODE = "POCT1A-UNKNOWN-OBSERVATION-CODE"
NOT_OBSERVATION = "POCT1A-NOT-OBSERVATION"
XML_INVALID = "POCT1A-XML-INVALID"
NO_SERVICE = "POCT1A-NO-OBSERVATIONS"
PATIENT_ID_MISSING = "POCT1A-PATIENT-ID-MISSING"
PATIENT_ID_CHECKSUM = "POCT1A-PATIENT-ID-CHECKSUM"
VALUE_MISSING = "POCT1A-VALUE-MISSING"
VALUE_NOT_NUMERIC = "POCT1A-VALUE-NOT-NUMERIC"
UNIT_MISMATCH = "POCT1A-UNIT-MISMATCH"
TIME_MISSING = "POCT1A-OBSERVATION-TIME-MISSING"
TIME_INVALID = "POCT1A-DATETIME-INVALID"
TIME_NO_ZONE = "POCT1A-DATETIME-NO-TIMEZONE"
DEVICE_UNKNOWN = "POCT1A-DEVICE-UNKNOWN"

_PERSON_SYSTEMS = {FNR: systems.FNR, DNR: systems.DNR, FHNR: systems.FHNR}


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '|'.join(parts))}"


@dataclass
class _Ctx:
    """What one mapping run accumulates."""
    root: Element
    code_map: dict[str, dict]
    device_key: str
    manufacturer: str
    control_id: str
    tz: str
    issues: list[Issue] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)
    qc: list[dict] = field(default_factory=list)
    device_urn: str | None = None

    def issue(self, severity: str, code: str, location: str, text: str, text_nb: str = "") -> None:
        self.issues.append(Issue(severity, code, location, text, text_nb))

    def time(self, raw: str | None, location: str) -> str | None:
        if raw is None:
            return None
        value, assumed = parse_datetime(raw, self.tz)
        if value is None:
            self.issue("error", TIME_INVALID, location, "time is not an ISO 8601 date-time",
                       "tidspunktet er ikke en gyldig ISO 8601-tid")
        elif assumed:
            self.issue("warning", TIME_NO_ZONE, location,
                       f"time has no UTC offset; {self.tz} assumed")
        return value


def poct_to_bundle(msg, *, code_map: dict[str, dict], device_id: str | None = None,
                   manufacturer: str | None = None,
                   default_tz: str = DEFAULT_TZ) -> tuple[dict, list[Issue], list[dict]]:
    """Map one POCT1-A observation message.

    ``msg``: raw bytes/str, an ElementTree element, or the adapter's
    PoctMessage. ``device_id``: the analyser's serial as learned from HEL
    (used when the message carries no ``DEV.serial_id``).
    Returns (transaction Bundle, issues, QC events).
    """
    try:
        root = source.root_of(msg)
    except source.SourceError as exc:
        return _bundle([], None, None, None), [Issue("fatal", XML_INVALID, "/", str(exc))], []
    msg_type = source.name_of(root).upper()
    hdr = source.first(root, "HDR")
    control_id = source.value(hdr, "HDR.control_id") or ""
    serial = source.value(root, "DEV.serial_id") or (device_id or "").strip() or None
    ctx = _Ctx(root, code_map, serial or "unknown-device",
               manufacturer or source.value(root, "DEV.manufacturer_name") or "poct1a",
               control_id, default_tz)
    if msg_type not in ("OBS.R01", "OBS.R02"):
        ctx.issue("fatal", NOT_OBSERVATION, "/", f"{msg_type} is not an observation message")
        return _bundle([], None, None, None), ctx.issues, []
    if serial is None:
        ctx.issue("warning", DEVICE_UNKNOWN, "DEV.serial_id",
                  "the analyser is not identified (no DEV.serial_id, no device_id)")
    services = source.children(root, "SVC")
    if not services:
        ctx.issue("error", NO_SERVICE, "SVC", "the message holds no SVC (observation service)")
    for i, svc in enumerate(services, 1):
        role = (source.value(svc, "SVC.role_cd") or "OBS").upper()
        if msg_type == "OBS.R01" and role in PATIENT_ROLES:
            _patient_service(ctx, svc, i)
        else:
            _qc_service(ctx, svc, i, role)
    created = ctx.time(source.value(hdr, "HDR.creation_dttm"), "HDR.creation_dttm")
    bundle = _bundle(ctx.entries, control_id or None, ctx.device_key, created)
    plain_spaces(bundle)
    return bundle, ctx.issues, ctx.qc


def _bundle(entries: list[dict], control_id: str | None, device_key: str | None,
            created: str | None) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "transaction"}
    if control_id and device_key:
        bundle["id"] = _urn("bundle", device_key, control_id).rsplit(":", 1)[-1]
        bundle["identifier"] = {"system": systems.local_system("poct1a-message", device_key),
                                "value": control_id}
    if created:
        bundle["timestamp"] = created
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(urn: str, resource: dict, if_none_exist: str | None = None) -> dict:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": urn, "resource": resource, "request": request}


# patient observations --------------------------------------------------------

def _patient_service(ctx: _Ctx, svc: Element, i: int) -> None:
    loc = f"SVC[{i}]"
    patient_urn = _patient(ctx, svc, loc)
    when = _service_time(ctx, svc, loc)
    observations = list(source.descendants(svc, "OBS"))
    if not observations:
        ctx.issue("error", NO_SERVICE, loc, "the service holds no OBS")
    device_urn = _device(ctx)
    for j, obs in enumerate(observations, 1):
        resource = _observation(ctx, svc, obs, f"{loc}/OBS[{j}]", when)
        if resource is None:
            continue
        if patient_urn:
            resource["subject"] = {"reference": patient_urn}
        if device_urn:
            resource["device"] = {"reference": device_urn}
        urn = _urn("observation", ctx.device_key, ctx.control_id, str(i), str(j))
        ctx.entries.append(_entry(urn, resource))


def _patient(ctx: _Ctx, svc: Element, loc: str) -> str | None:
    pid = source.value(svc, "PT.patient_id")
    if pid is None:
        ctx.issue("error", PATIENT_ID_MISSING, f"{loc}/PT/PT.patient_id",
                  "the patient observation has no patient id", "pasient-id mangler")
        return None
    system = _patient_system(ctx, pid, f"{loc}/PT/PT.patient_id")
    urn = _urn("patient", system, pid)
    patient = {"resourceType": "Patient", "identifier": [{"system": system, "value": pid}]}
    ctx.entries.append(_entry(urn, patient, f"identifier={system}|{pid}"))
    return urn


def _patient_system(ctx: _Ctx, pid: str, loc: str) -> str:
    kind, _synthetic = classify_person_number(pid)
    if kind in _PERSON_SYSTEMS:
        if person_check_digits(pid[:9]) == pid[9:]:
            return _PERSON_SYSTEMS[kind]
        ctx.issue("warning", PATIENT_ID_CHECKSUM, loc,
                  "11-digit patient id fails the mod-11 check; kept as a local id",
                  "11-sifret pasient-id har feil kontrollsiffer; brukt som lokal id")
    return systems.local_system("patient", ctx.device_key)


def _service_time(ctx: _Ctx, svc: Element, loc: str) -> str | None:
    raw = source.value(svc, "SVC.observation_dttm")
    if raw is None:
        ctx.issue("error", TIME_MISSING, f"{loc}/SVC.observation_dttm",
                  "the observation has no time", "analysetidspunkt mangler")
    return ctx.time(raw, f"{loc}/SVC.observation_dttm")


def _device(ctx: _Ctx) -> str | None:
    if ctx.device_urn is not None or ctx.device_key == "unknown-device":
        return ctx.device_urn
    system = systems.local_system("device-serial", ctx.manufacturer)
    device = {"resourceType": "Device",
              "identifier": [{"system": system, "value": ctx.device_key}],
              "manufacturer": ctx.manufacturer}
    name = source.value(ctx.root, "DEV.device_name")
    if name:
        device["deviceName"] = [{"name": name, "type": "user-friendly-name"}]
    ctx.device_urn = _urn("device", system, ctx.device_key)
    ctx.entries.append(_entry(ctx.device_urn, device, f"identifier={system}|{ctx.device_key}"))
    return ctx.device_urn


def _lookup(ctx: _Ctx, obs: Element, loc: str) -> tuple[str | None, str | None, dict | None]:
    """(device code, code system name SN, code map row) for one OBS."""
    node = source.first(obs, "OBS.observation_id")
    code = source.value(obs, "OBS.observation_id")
    sn = (node.get("SN") or "").strip() if node is not None else ""
    row = None
    if code is not None:
        row = ctx.code_map.get(f"{sn}:{code}") if sn else None
        row = row or ctx.code_map.get(code)
    if row is None or not row.get("nlk"):
        ctx.issue("error", UNKNOWN_CODE, f"{loc}/OBS.observation_id",
                  f"observation code {code!r} is not in this device's code map",
                  f"analysekode {code!r} finnes ikke i kodeverket for instrumentet")
        row = None
    return code, sn or None, row


def _observation(ctx: _Ctx, svc: Element, obs: Element, loc: str, when: str | None) -> dict | None:
    code, sn, row = _lookup(ctx, obs, loc)
    value = _value(ctx, obs, loc, row)
    if row is None or value is None:
        return None
    resource: dict = {
        "resourceType": "Observation",
        "identifier": [{"system": systems.local_system("poct1a-observation", ctx.device_key),
                        "value": f"{ctx.control_id}:{loc}"}],
        "status": "final",
        "category": [{"coding": [{"system": systems.OBS_CATEGORY, "code": "laboratory"}]}],
        "code": _code(ctx, code, sn, row),
        **value,
    }
    if when:
        resource["effectiveDateTime"] = when
        resource["extension"] = [{"url": ANALYSIS_TIME_EXT, "valueDateTime": when}]
    _performer_method_note(ctx, svc, obs, resource)
    order = source.value(svc, "ORD.order_id")
    if order:
        resource["basedOn"] = [{"type": "ServiceRequest", "identifier": {
            "system": systems.local_system("placer", ctx.device_key), "value": order}}]
    return resource


def _code(ctx: _Ctx, code: str, sn: str | None, row: dict) -> dict:
    codings = [{"system": systems.NLK, "code": row["nlk"]}]
    if row.get("display"):
        codings[0]["display"] = row["display"]
    if row.get("loinc"):
        codings.append({"system": systems.LOINC, "code": row["loinc"]})
    codings.append({"system": systems.local_system("poct1a-code", sn or ctx.manufacturer),
                    "code": code})
    concept = {"coding": codings}
    if row.get("display"):
        concept["text"] = row["display"]
    return concept


def _value(ctx: _Ctx, obs: Element, loc: str, row: dict | None) -> dict | None:
    """``{"valueQuantity": …}`` or ``{"valueString": …}``; None after an issue."""
    node = source.first(obs, "OBS.value")
    raw = node.get("V", "").strip() if node is not None else ""
    if not raw:
        text = source.value(obs, "OBS.qualitative_value")
        if text is None:
            ctx.issue("error", VALUE_MISSING, f"{loc}/OBS.value", "the observation has no value",
                      "resultatverdi mangler")
            return None
        return {"valueString": text}
    number = parse_number(raw)
    if number is None:
        ctx.issue("error", VALUE_NOT_NUMERIC, f"{loc}/OBS.value",
                  "OBS.value V is not a number", "resultatverdien er ikke et tall")
        return None
    unit = node.get("U")
    expected = row.get("unit") if row else None
    if not same_unit(unit, expected, row.get("units", ()) if row else ()):
        ctx.issue("error", UNIT_MISMATCH, f"{loc}/OBS.value",
                  f"unit {unit!r} differs from the code map's {expected!r}",
                  f"enheten {unit!r} avviker fra kodeverkets {expected!r}")
        return None
    comparator, number_value = number
    unit_code = ucum(expected) if expected else ucum(unit)
    quantity: dict = {"value": number_value}
    if comparator:
        quantity["comparator"] = comparator
    if unit_code:
        quantity.update(unit=(unit or expected or "").strip() or unit_code,
                        system=systems.UCUM, code=unit_code)
    return {"valueQuantity": quantity}


def _performer_method_note(ctx: _Ctx, svc: Element, obs: Element, resource: dict) -> None:
    operator = source.value(svc, "OPR.operator_id")
    if operator:
        resource["performer"] = [{"identifier": {
            "system": OPERATOR_SYSTEM, "value": operator}}]
    method = source.value(obs, "OBS.method_cd")
    if method:
        resource["method"] = {"coding": [{"system": systems.local_system("poct1a-method", ctx.manufacturer),
                                          "code": method}]}
    reagent = _reagent_note(svc)
    if reagent:
        resource["note"] = [{"text": reagent}]


def _reagent_note(svc: Element) -> str | None:
    rgt = source.first(svc, "RGT")
    if rgt is None:
        return None
    parts = [("Reagent", source.value(rgt, "RGT.name")), ("lot", source.value(rgt, "RGT.lot_number")),
             ("expires", source.value(rgt, "RGT.expiration_date"))]
    text = ", ".join(f"{label} {v}" for label, v in parts if v)
    return text or None


# QC and calibration ------------------------------------------------------------

def _qc_service(ctx: _Ctx, svc: Element, i: int, role: str) -> None:
    loc = f"SVC[{i}]"
    when = _service_time(ctx, svc, loc)
    ctc = source.first(svc, "CTC")
    observations = list(source.descendants(svc, "OBS"))
    if not observations:
        ctx.issue("error", NO_SERVICE, loc, "the QC service holds no OBS")
    for j, obs in enumerate(observations, 1):
        oloc = f"{loc}/OBS[{j}]"
        code, sn, row = _lookup(ctx, obs, oloc)
        node = source.first(obs, "OBS.value")
        raw = (node.get("V") or "").strip() if node is not None else ""
        number = parse_number(raw) if raw else None
        ctx.qc.append({
            "role": role,
            "control_id": ctx.control_id,
            "device_serial": None if ctx.device_key == "unknown-device" else ctx.device_key,
            "analysis_code": code,
            "code_system": sn,
            "nlk": row["nlk"] if row else None,
            "value": number[1] if number else None,
            "comparator": number[0] if number else None,
            "value_text": raw or source.value(obs, "OBS.qualitative_value"),
            "unit": ucum(node.get("U")) if node is not None else None,
            "control_name": source.value(ctc, "CTC.name"),
            "control_lot": source.value(ctc, "CTC.lot_number"),
            "control_level": source.value(ctc, "CTC.level_cd"),
            "control_expiration": source.value(ctc, "CTC.expiration_date"),
            "reagent_lot": source.value(svc, "RGT.lot_number"),
            "operator": source.value(svc, "OPR.operator_id"),
            "time": when,
        })
