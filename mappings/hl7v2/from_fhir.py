"""FHIR Bundles → HL7 v2.5.1 messages, for delivery to MLLP destinations.

The inverse of ``to_fhir``:

- ``bundle_to_oru_r01``: results. Per Patient with results a PID (one
  PATIENT_RESULT group each, so no result is filed under another patient),
  and per DiagnosticReport an ORC/OBR from its ServiceRequest, OBX (+NTE) per
  result and SPM (+NTE) per specimen. Observations that no report lists are
  grouped per ServiceRequest in the bundle; one that has neither (instrument
  results from ASTM and POCT1-A) gets an ORC/OBR of its own: OBR-4 its code,
  OBR-7 its specimen's collection time (else its effective time), OBR-22 its
  ``issued``, OBR-25 its status, OBR-2 the order id of ``basedOn.identifier``.
  Every result OBX thus follows an OBR, as the ORDER_OBSERVATION group
  requires. Only when writing v2.7 or later, an Observation about the patient
  alone (no order, specimen, report, device, analysis time or note) goes
  after the PID as PATIENT_OBSERVATION; v2.5.1 has no such group.
- ``bundle_to_oml_o21``: orders. One PID, and per ServiceRequest an ORC
  (NW/CA/HD from its status) and OBR, NTE from its notes, OBX (+NTE) for its
  ``supportingInfo`` Observations and SPM (+NTE) for its Specimens.

Lean string building with escaping (see docs/architecture.md for why not
hl7apy, and the tests that hold the output to hl7apy's parse); UTF-8 with
MSH-18 "UNICODE UTF-8" by default, or 8859/1 / ASCII on request (characters
outside the set are written as HL7 ``\\X..\\`` hex escapes, never lost).
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from . import datatypes as dt
from . import writer as w
from .timestamps import to_v2
from .to_fhir import ANALYSIS_TIME_EXT

OBX_STATUS = {"final": "F", "corrected": "C", "amended": "C", "preliminary": "P",
              "cancelled": "X", "registered": "I", "entered-in-error": "W"}
DR_STATUS = {"final": "F", "corrected": "C", "amended": "C", "appended": "C",
             "preliminary": "P", "cancelled": "X", "registered": "I", "partial": "A"}
SR_STATUS = {"completed": "CM", "revoked": "CA", "active": "IP", "on-hold": "HD"}
ORDER_CONTROL = {"revoked": "CA", "on-hold": "HD"}     # ORC-1; anything else is NW
GENDER = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
NAME_USE = {"official": "L", "usual": "D", "nickname": "N", "maiden": "M", "anonymous": "S"}
# OBR-25 of an order no DiagnosticReport describes, from its Observations' status.
OBS_ORDER_STATUS = {"final": "F", "corrected": "C", "amended": "C", "preliminary": "P",
                    "cancelled": "X", "registered": "I"}


def bundle_to_oru_r01(bundle: dict, *, control_id: str, timestamp: datetime,
                      sending_app: str = "LABGATE", sending_facility: str = "",
                      receiving_app: str = "", receiving_facility: str = "",
                      version: str = "2.5.1", charset: str = "UNICODE UTF-8") -> bytes:
    """Write the results in ``bundle`` as one ORU^R01 message (bytes, no MLLP framing).

    ``charset`` is MSH-18: "UNICODE UTF-8", "8859/1" or "ASCII". Raises
    ValueError for a bundle it cannot write (delivery dead-letters it).
    """
    try:
        return _Writer(bundle, charset).write(control_id, timestamp, sending_app, sending_facility,
                                              receiving_app, receiving_facility, version)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"cannot write this bundle as ORU^R01: {type(e).__name__} {e}") from None


def bundle_to_oml_o21(bundle: dict, *, control_id: str, timestamp: datetime,
                      sending_app: str = "LABGATE", sending_facility: str = "",
                      receiving_app: str = "", receiving_facility: str = "",
                      version: str = "2.5.1", charset: str = "UNICODE UTF-8") -> bytes:
    """Write the orders in ``bundle`` (ServiceRequests with their Specimens and
    Patient) as one OML^O21 message (bytes, no MLLP framing).

    Raises ValueError when the bundle holds no ServiceRequest, or cannot be written.
    """
    writer = _Writer(bundle, charset)
    if not writer.by_type.get("ServiceRequest"):
        raise ValueError("an OML^O21 needs at least one ServiceRequest in the bundle")
    try:
        return writer.write_oml(control_id, timestamp, sending_app, sending_facility,
                                receiving_app, receiving_facility, version)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"cannot write this bundle as OML^O21: {type(e).__name__} {e}") from None


class _Writer:
    def __init__(self, bundle: dict, charset: str = "UNICODE UTF-8"):
        if charset not in w.CHARSETS:
            raise ValueError(f"charset must be one of {sorted(w.CHARSETS)}, not {charset!r}")
        self.charset, self.codec = charset, w.CHARSETS[charset]
        self.by_url: dict[str, dict] = {}
        self.by_type: dict[str, list[dict]] = {}
        for e in bundle.get("entry") or []:
            res = e.get("resource") or {}
            rtype = res.get("resourceType", "")
            self.by_type.setdefault(rtype, []).append(res)
            if e.get("fullUrl"):
                self.by_url[e["fullUrl"]] = res
            if res.get("id"):
                self.by_url[f"{rtype}/{res['id']}"] = res
        # Built once per Practitioner: the same people are named on every OBX.
        self._xcn_by_practitioner: dict[int, list] = {}
        self._encoded_xcn: dict[int, tuple[list, str]] = {}

    def resolve(self, ref: dict | None) -> dict | None:
        return self.by_url.get((ref or {}).get("reference", ""))

    def write(self, control_id, timestamp, sending_app, sending_facility, receiving_app,
              receiving_facility, version) -> bytes:
        segs = [w.msh([w.hd(sending_app), w.hd(sending_facility), w.hd(receiving_app),
                       w.hd(receiving_facility), w.msh_time(timestamp), "", "ORU^R01^ORU_R01",
                       w.component([control_id]), "P", w.component([version]), "", "",
                       "AL", "NE", "", self.charset])]
        groups, patient_obs = self.groups(_version_at_least(version, (2, 7)))
        patients = self.by_type.get("Patient") or []
        if len(patients) > 1:
            segs += self.patient_results(patients, groups, patient_obs)
        else:
            segs += self.patient_result(patients[0] if patients else {}, 1, groups, patient_obs)
        return w.message(segs, self.codec)

    def patient_result(self, patient: dict, set_id: int, groups: list,
                       patient_obs: list[dict]) -> list[str]:
        """One PATIENT_RESULT group: PID, PATIENT_OBSERVATION OBX, ORDER_OBSERVATIONs."""
        if patient_obs and not groups:     # the group needs at least one ORDER_OBSERVATION
            groups, patient_obs = [self.own_order(o) for o in patient_obs], []
        segs = [self.pid(patient, set_id)]
        for number, o in enumerate(patient_obs, 1):
            segs += self.obx(number, o)
        for number, (sr, dr, obs, specs) in enumerate(groups, 1):
            segs += self.group(number, sr, dr, obs, specs)
        return segs

    def patient_results(self, patients: list[dict], groups: list,
                        patient_obs: list[dict]) -> list[str]:
        """A PATIENT_RESULT per Patient that has results (an ASTM or POCT1-A message
        may hold several patients); what names no Patient of the bundle goes to the first."""
        index = {id(p): k for k, p in enumerate(patients)}
        per: list[tuple[list, list]] = [([], []) for _ in patients]
        for g in groups:
            sr, dr, obs, _ = g
            per[self.patient_of(index, dr, sr, *obs[:1])][0].append(g)
        for o in patient_obs:
            per[self.patient_of(index, o)][1].append(o)
        segs: list[str] = []
        set_id = 0
        for patient, (gs, pos) in zip(patients, per):
            if gs or pos:
                set_id += 1
                segs += self.patient_result(patient, set_id, gs, pos)
        return segs or [self.pid(patients[0])]

    def patient_of(self, index: dict[int, int], *resources: dict | None) -> int:
        """Position in ``index`` of the Patient the first of ``resources`` with a subject names."""
        for res in resources:
            if res:
                patient = self.resolve(res.get("subject"))
                if patient is not None:
                    return index.get(id(patient), 0)
        return 0

    def write_oml(self, control_id, timestamp, sending_app, sending_facility, receiving_app,
                  receiving_facility, version) -> bytes:
        segs = [w.msh([w.hd(sending_app), w.hd(sending_facility), w.hd(receiving_app),
                       w.hd(receiving_facility), w.msh_time(timestamp), "", "OML^O21^OML_O21",
                       w.component([control_id]), "P", w.component([version]), "", "",
                       "AL", "NE", "", self.charset])]
        patients = self.by_type.get("Patient") or []
        segs.append(self.pid(patients[0] if patients else {}))
        for number, sr in enumerate(self.by_type.get("ServiceRequest") or [], 1):
            segs += self.order(number, sr)
        return w.message(segs, self.codec)

    def order(self, number: int, sr: dict) -> list[str]:
        """ORC, OBR, NTE*, (OBX NTE*)*, (SPM NTE*)* of one ServiceRequest."""
        placer, filler = self.order_ids(sr)
        status = sr.get("status", "")
        requester = self.encode_person(self.person(sr.get("requester")))
        segs = [w.segment("ORC", [
            ORDER_CONTROL.get(status, "NW"), placer, filler, "", SR_STATUS.get(status, ""),
            "", "", "", _v2_time(sr.get("authoredOn", "")), "", "", requester])]
        specs = [s for s in map(self.resolve, sr.get("specimen") or []) if s] or \
            [s for s in self.by_type.get("Specimen") or []
             if any(self.resolve(r) is sr for r in s.get("request") or [])]
        first = specs[0] if specs else {}
        coll = first.get("collection") or {}
        segs.append(w.segment("OBR", [
            str(number), placer, filler, _cwe(sr.get("code")), "", "",
            _v2_time(coll.get("collectedDateTime", "")), "", "",
            self.encode_person(self.person(coll.get("collector"))), "", "", "", "", "", requester]))
        segs += self.notes(sr)
        supporting = [o for o in map(self.resolve, sr.get("supportingInfo") or [])
                      if o and o.get("resourceType") == "Observation"]
        for k, o in enumerate(supporting, 1):
            segs += self.obx(k, o)
        for k, spec in enumerate(specs, 1):
            segs.append(self.spm(k, spec))
            segs += self.notes(spec)
        return segs

    @staticmethod
    def order_ids(sr: dict) -> tuple[str, str]:
        """Encoded placer and filler order numbers (ORC/OBR-2 and -3)."""
        placer = filler = None
        for ident in sr.get("identifier") or []:
            code = ((ident.get("type") or {}).get("coding") or [{}])[0].get("code")
            if code == "PLAC" and placer is None:
                placer = ident
            elif code == "FILL" and filler is None:
                filler = ident
        return _ei(placer), _ei(filler)

    # ------------------------------------------------------------ grouping

    def groups(self, patient_level: bool = False) -> tuple[list[tuple], list[dict]]:
        """(ServiceRequest, DiagnosticReport, Observations, Specimens) per OBR, and the
        Observations written as PATIENT_OBSERVATION (only when ``patient_level``)."""
        listed: set[int] = set()
        out = []
        for dr in self.by_type.get("DiagnosticReport") or []:
            sr = self.resolve((dr.get("basedOn") or [None])[0])
            obs = [o for o in map(self.resolve, dr.get("result") or []) if o]
            specs = [s for s in map(self.resolve, dr.get("specimen") or []) if s]
            listed.update(map(id, obs))
            out.append((sr, dr, obs, specs))
        rest: dict[int, tuple] = {}
        patient_obs: list[dict] = []
        for o in self.by_type.get("Observation") or []:
            if id(o) in listed:
                continue
            sr = self.resolve((o.get("basedOn") or [None])[0])
            if sr is None:
                if patient_level and _patient_level(o):
                    patient_obs.append(o)
                else:
                    # Not one group for all of them: OBR-4 would name one result's code
                    # for the others, and results of different specimens would mix.
                    rest[id(o)] = self.own_order(o)
                continue
            key = id(sr)
            if key not in rest:
                rest[key] = (sr, None, [], [])
            rest[key][2].append(o)
            spec = self.resolve(o.get("specimen"))
            if spec and all(spec is not s for s in rest[key][3]):
                rest[key][3].append(spec)
        return out + list(rest.values()), patient_obs

    def own_order(self, o: dict) -> tuple:
        """The group of an Observation that no report lists and no order in the bundle has."""
        spec = self.resolve(o.get("specimen"))
        return None, None, [o], [spec] if spec else []

    # ------------------------------------------------------------ segments

    def pid(self, p: dict, set_id: int = 1) -> str:
        ids = [dt.cx_to_v2(i) for i in p.get("identifier") or [] if i.get("value")]
        names = []
        for n in p.get("name") or []:
            given = (n.get("given") or []) + ["", ""]
            names.append([n.get("family", ""), given[0], given[1],
                          (n.get("suffix") or [""])[0], (n.get("prefix") or [""])[0], "",
                          NAME_USE.get(n.get("use", ""), "")])
        return w.segment("PID", [str(set_id), "", w.repeated(ids), "", w.repeated(names), "",
                                 _v2_time(p.get("birthDate", "")),
                                 GENDER.get(p.get("gender", ""), "")])

    def person(self, ref: dict | None) -> list:
        """XCN components of the referenced Practitioner; [] when it is none."""
        prac = self.resolve(ref)
        if not (prac and prac.get("resourceType") == "Practitioner"):
            return []
        key = id(prac)
        if key not in self._xcn_by_practitioner:
            self._xcn_by_practitioner[key] = dt.practitioner_to_xcn(prac)
        return self._xcn_by_practitioner[key]

    def encode_person(self, xcn: list) -> str:
        """``w.component(xcn)`` of what ``person`` returned, encoded once per person."""
        cached = self._encoded_xcn.get(id(xcn))
        if cached is None or cached[0] is not xcn:
            cached = self._encoded_xcn[id(xcn)] = (xcn, w.component(xcn))
        return cached[1]

    def group(self, number: int, sr: dict | None, dr: dict | None, obs: list[dict],
              specs: list[dict]) -> list[str]:
        sr = sr or {}
        placer_v2, filler_v2 = self.order_ids(sr)
        if dr:
            effective, issued = dr.get("effectiveDateTime") or "", dr.get("issued", "")
            status = DR_STATUS.get(dr.get("status", ""), "")
            category = ((dr.get("category") or [{}])[0].get("coding") or [{}])[0].get("code", "")
        else:   # no report: OBR-7, -22 and -25 from the specimen and the results
            dr, category = {}, ""
            effective = ((specs[0].get("collection") or {}).get("collectedDateTime") if specs
                         else "") or next((o["effectiveDateTime"] for o in obs
                                           if o.get("effectiveDateTime")), "")
            issued = max((o["issued"] for o in obs if o.get("issued")), default="")
            status = _order_status(obs)
            if not sr:
                placer_v2 = _ei(_order_identifier(obs[0]))
        segs = [w.segment("ORC", ["RE", placer_v2, filler_v2, "",
                                  SR_STATUS.get(sr.get("status", ""), "")])]
        code = sr.get("code") if sr else dr.get("code") or (obs[0].get("code") if obs else None)
        collector = self.person(((specs[0] if specs else {}).get("collection") or {})
                                .get("collector"))
        segs.append(w.segment("OBR", [
            str(number), placer_v2, filler_v2, _cwe(code), "", "",
            _v2_time(effective), "", "", self.encode_person(collector), "", "", "", "", "",
            self.encode_person(self.person(sr.get("requester"))), "", "", "", "", "",
            _v2_time(issued), "", w.component([category]), status]))
        segs += self.notes(sr)
        first = specs[0] if specs else None
        obx_no = 0
        for o in obs:       # results of the first specimen (or none) come before any SPM
            if self.resolve(o.get("specimen")) in (None, first) or not specs:
                obx_no += 1
                segs += self.obx(obx_no, o, issued)
        for k, spec in enumerate(specs):
            segs.append(self.spm(k + 1, spec))
            segs += self.notes(spec)
            if k == 0:
                continue
            for o in obs:
                if self.resolve(o.get("specimen")) is spec:
                    obx_no += 1
                    segs += self.obx(obx_no, o, issued)
        return segs

    @staticmethod
    def notes(res: dict) -> list[str]:
        notes = res.get("note")
        if not notes:       # the usual case
            return []
        return [w.segment("NTE", [str(i), "", w.component([n.get("text", "")])])
                for i, n in enumerate(notes, 1) if n.get("text")]

    def spm(self, number: int, spec: dict) -> str:
        ident = (spec.get("identifier") or [None])[0]
        eip = [dt.ei_to_v2(ident), dt.ei_to_v2(spec.get("accessionIdentifier"))]
        coll = spec.get("collection") or {}
        fields = [str(number), w.component(eip), "", _cwe(spec.get("type"))] + [""] * 12
        fields += [_v2_time(coll.get("collectedDateTime", "")),
                   _v2_time(spec.get("receivedTime", ""))]
        return w.segment("SPM", fields)

    def obx(self, number: int, o: dict, report_issued: str = "") -> list[str]:
        vtype, value, unit = _value(o)
        ranges = o.get("referenceRange") or [{}]
        rng = ranges[0]
        if "low" in rng and "high" in rng:
            low, high = _number(rng["low"]), _number(rng["high"])
            rng_text = f"{low}-{high}" if low and high else f"<{high}" if high else \
                f">{low}" if low else ""
            unit = unit or rng["low"]
        else:
            rng_text = rng.get("text", "")
        unit_v2 = [unit.get("code", ""), unit.get("unit", ""),
                   dt.code_system_name(unit.get("system", "")) if unit.get("code") else ""] \
            if unit else []
        flags = [[c.get("code", "")] for i in o.get("interpretation") or []
                 for c in (i.get("coding") or [])[:1]]
        performers = [p for p in map(self.person, o.get("performer") or []) if p]
        device = (o.get("device") or {}).get("identifier")
        seg = w.segment("OBX", [
            str(number), vtype, _cwe(o.get("code")), "", value,
            w.component(unit_v2), w.component([rng_text]), w.repeated(flags), "", "",
            OBX_STATUS.get(o.get("status", ""), ""), "", "",
            _v2_time(o.get("effectiveDateTime", "")), "",
            "~".join([self.encode_person(p) for p in performers]),
            _cwe(o.get("method")), _ei(device),
            _v2_time(analysis_time(o, report_issued))])
        return [seg] + self.notes(o)


def _v2_time(value: str) -> str:
    """``timestamps.to_v2``, cached for str values: a bundle repeats its times
    (OBR-7 in every OBX-14). Anything else goes straight through, to fail as before."""
    return _cached_v2_time(value) if type(value) is str else to_v2(value)


@lru_cache(maxsize=1024)
def _cached_v2_time(value: str) -> str:
    return to_v2(value)


def _patient_level(o: dict) -> bool:
    """About the patient alone (height, pregnancy …): no order, no specimen, and
    not an analyser's result (device, analysis time). PATIENT_OBSERVATION has no
    NTE, so one with notes goes in an order group, where its NTE may follow."""
    return not (o.get("basedOn") or o.get("specimen") or o.get("device") or o.get("note")
                or any(e.get("url") == ANALYSIS_TIME_EXT for e in o.get("extension") or []))


def _version_at_least(version: str, minimum: tuple[int, ...]) -> bool:
    parts = []
    for p in version.split("."):
        if not p.isdigit():
            break
        parts.append(int(p))
    return tuple(parts) >= minimum


def _order_status(obs: list[dict]) -> str:
    """OBR-25 from the results' statuses: theirs when they agree; else preliminary
    while any is pending, corrected when any was corrected."""
    codes = {OBS_ORDER_STATUS.get(o.get("status", ""), "") for o in obs}
    codes.discard("")
    if len(codes) <= 1:
        return codes.pop() if codes else ""
    return "P" if codes & {"P", "I"} else "C" if "C" in codes else "F"


def _order_identifier(o: dict) -> dict | None:
    """The order id an Observation names in ``basedOn.identifier`` (POCT1-A ``ORD.order_id``)."""
    for based_on in o.get("basedOn") or []:
        if based_on.get("identifier"):
            return based_on["identifier"]
    return None


def analysis_time(o: dict, report_issued: str = "") -> str:
    """OBX-19: the analysis-date-time extension, else ``issued`` when it is not
    just the report's (OBR-22) time copied down."""
    for ext in o.get("extension") or []:
        if ext.get("url") == ANALYSIS_TIME_EXT and ext.get("valueDateTime"):
            return ext["valueDateTime"]
    issued = o.get("issued", "")
    return issued if issued != report_issued else ""


def _cwe(cc: dict | None) -> str:
    """A CodeableConcept as an encoded CWE field."""
    return w.component(dt.codeable_to_v2(cc)) if cc else ""


def _ei(ident: dict | None) -> str:
    """An Identifier as an encoded EI field."""
    return w.component(dt.ei_to_v2(ident)) if ident else ""


def _number(quantity: dict | None) -> str:
    """A Quantity's value as v2 digits; "" when FHIR left it out (it is optional)."""
    value = (quantity or {}).get("value")
    if value is None:
        return ""
    if type(value) is float:    # results repeat (reference limits in every message)
        return _float_text(repr(value))
    return dt.format_number(value)


@lru_cache(maxsize=1024)
def _float_text(float_repr: str) -> str:
    # Keyed by repr, not the float: -0.0 == 0.0 would share one entry.
    return dt.format_number(float(float_repr))


def _value(o: dict) -> tuple[str, str, dict | None]:
    """OBX-2, encoded OBX-5 and the Quantity whose unit goes to OBX-6."""
    if "valueQuantity" in o:
        q = o["valueQuantity"]
        if q.get("comparator"):
            return "SN", w.component([q["comparator"], _number(q)]), q
        return "NM", _number(q), q
    if "valueRange" in o:
        r = o["valueRange"]
        return "SN", w.component(["", _number(r.get("low")), "-", _number(r.get("high"))]), \
            r.get("low") or r.get("high")
    if "valueRatio" in o:
        r = o["valueRatio"]
        return "SN", w.component(["", _number(r.get("numerator")), ":",
                                  _number(r.get("denominator"))]), r.get("numerator")
    if "valueString" in o:
        text = o["valueString"]
        return ("TX" if "\n" in text else "ST"), w.component([text]), None
    if "valueCodeableConcept" in o:
        return "CWE", _cwe(o["valueCodeableConcept"]), None
    if "valueDateTime" in o:
        return "TS", _v2_time(o["valueDateTime"]), None
    if "valueTime" in o:
        return "TM", w.component([o["valueTime"].replace(":", "")[:6]]), None
    return "", "", None
