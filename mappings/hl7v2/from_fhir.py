"""A FHIR result Bundle → ORU^R01 v2.5.1, for delivery to MLLP destinations.

The inverse of ``to_fhir``: one PID from the Patient, and per DiagnosticReport
an ORC/OBR from its ServiceRequest, OBX (+NTE) per result and SPM (+NTE) per
specimen. Observations that no report lists are grouped per ServiceRequest.
Lean string building with escaping; UTF-8, MSH-18 "UNICODE UTF-8".
"""
from __future__ import annotations

from datetime import datetime

from . import datatypes as dt
from . import writer as w
from .timestamps import to_v2, v2_now

OBX_STATUS = {"final": "F", "corrected": "C", "amended": "C", "preliminary": "P",
              "cancelled": "X", "registered": "I", "entered-in-error": "W"}
DR_STATUS = {"final": "F", "corrected": "C", "amended": "C", "appended": "C",
             "preliminary": "P", "cancelled": "X", "registered": "I", "partial": "A"}
SR_STATUS = {"completed": "CM", "revoked": "CA", "active": "IP", "on-hold": "HD"}
GENDER = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
NAME_USE = {"official": "L", "usual": "D", "nickname": "N", "maiden": "M", "anonymous": "S"}


def bundle_to_oru_r01(bundle: dict, *, control_id: str, timestamp: datetime,
                      sending_app: str = "LABGATE", sending_facility: str = "",
                      receiving_app: str = "", receiving_facility: str = "",
                      version: str = "2.5.1") -> bytes:
    """Write the results in ``bundle`` as one ORU^R01 message (bytes, no MLLP framing)."""
    return _Writer(bundle).write(control_id, timestamp, sending_app, sending_facility,
                                 receiving_app, receiving_facility, version)


class _Writer:
    def __init__(self, bundle: dict):
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

    def resolve(self, ref: dict | None) -> dict | None:
        return self.by_url.get((ref or {}).get("reference", ""))

    def write(self, control_id, timestamp, sending_app, sending_facility, receiving_app,
              receiving_facility, version) -> bytes:
        segs = [w.msh([w.hd(sending_app), w.hd(sending_facility), w.hd(receiving_app),
                       w.hd(receiving_facility), v2_now(timestamp), "", "ORU^R01^ORU_R01",
                       w.component([control_id]), "P", w.component([version]), "", "",
                       "AL", "NE", "", "UNICODE UTF-8"])]
        patients = self.by_type.get("Patient") or []
        segs.append(self.pid(patients[0] if patients else {}))
        for number, (sr, dr, obs, specs) in enumerate(self.groups(), 1):
            segs += self.group(number, sr, dr, obs, specs)
        return w.message(segs, "utf-8")

    # ------------------------------------------------------------ grouping

    def groups(self):
        """(ServiceRequest, DiagnosticReport, Observations, Specimens) per OBR."""
        listed: set[int] = set()
        out = []
        for dr in self.by_type.get("DiagnosticReport") or []:
            sr = self.resolve((dr.get("basedOn") or [None])[0])
            obs = [o for o in map(self.resolve, dr.get("result") or []) if o]
            specs = [s for s in map(self.resolve, dr.get("specimen") or []) if s]
            listed.update(id(o) for o in obs)
            out.append((sr, dr, obs, specs))
        rest: dict[int, tuple] = {}
        for o in self.by_type.get("Observation") or []:
            if id(o) in listed:
                continue
            sr = self.resolve((o.get("basedOn") or [None])[0])
            key = id(sr)
            if key not in rest:
                rest[key] = (sr, None, [], [])
            rest[key][2].append(o)
            spec = self.resolve(o.get("specimen"))
            if spec and all(spec is not s for s in rest[key][3]):
                rest[key][3].append(spec)
        return out + list(rest.values())

    # ------------------------------------------------------------ segments

    def pid(self, p: dict) -> str:
        ids = [dt.cx_to_v2(i) for i in p.get("identifier") or [] if i.get("value")]
        names = []
        for n in p.get("name") or []:
            given = (n.get("given") or []) + ["", ""]
            names.append([n.get("family", ""), given[0], given[1],
                          (n.get("suffix") or [""])[0], (n.get("prefix") or [""])[0], "",
                          NAME_USE.get(n.get("use", ""), "")])
        return w.segment("PID", ["1", "", w.repeated(ids), "", w.repeated(names), "",
                                 to_v2(p.get("birthDate", "")),
                                 GENDER.get(p.get("gender", ""), "")])

    def person(self, ref: dict | None) -> list:
        prac = self.resolve(ref)
        return dt.practitioner_to_xcn(prac) if prac and prac.get(
            "resourceType") == "Practitioner" else []

    def group(self, number: int, sr: dict | None, dr: dict | None, obs: list[dict],
              specs: list[dict]) -> list[str]:
        sr, dr = sr or {}, dr or {}
        placer = filler = None
        for ident in sr.get("identifier") or []:
            code = ((ident.get("type") or {}).get("coding") or [{}])[0].get("code")
            if code == "PLAC" and placer is None:
                placer = ident
            elif code == "FILL" and filler is None:
                filler = ident
        placer_v2, filler_v2 = w.component(dt.ei_to_v2(placer)), w.component(dt.ei_to_v2(filler))
        segs = [w.segment("ORC", ["RE", placer_v2, filler_v2, "",
                                  SR_STATUS.get(sr.get("status", ""), "")])]
        code = sr.get("code") if sr else dr.get("code") or (obs[0].get("code") if obs else None)
        collector = self.person(((specs[0] if specs else {}).get("collection") or {})
                                .get("collector"))
        category = ((dr.get("category") or [{}])[0].get("coding") or [{}])[0].get("code", "")
        effective = dr.get("effectiveDateTime") or ""
        segs.append(w.segment("OBR", [
            str(number), placer_v2, filler_v2, w.component(dt.codeable_to_v2(code)), "", "",
            to_v2(effective), "", "", w.component(collector), "", "", "", "", "",
            w.component(self.person(sr.get("requester"))), "", "", "", "", "",
            to_v2(dr.get("issued", "")), "", category, DR_STATUS.get(dr.get("status", ""), "")]))
        segs += self.notes(sr)
        first = specs[0] if specs else None
        obx_no = 0
        for o in obs:       # results of the first specimen (or none) come before any SPM
            if self.resolve(o.get("specimen")) in (None, first) or not specs:
                obx_no += 1
                segs += self.obx(obx_no, o)
        for k, spec in enumerate(specs):
            segs.append(self.spm(k + 1, spec))
            segs += self.notes(spec)
            if k == 0:
                continue
            for o in obs:
                if self.resolve(o.get("specimen")) is spec:
                    obx_no += 1
                    segs += self.obx(obx_no, o)
        return segs

    @staticmethod
    def notes(res: dict) -> list[str]:
        return [w.segment("NTE", [str(i), "", w.component([n.get("text", "")])])
                for i, n in enumerate(res.get("note") or [], 1) if n.get("text")]

    def spm(self, number: int, spec: dict) -> str:
        ident = (spec.get("identifier") or [None])[0]
        eip = [dt.ei_to_v2(ident), dt.ei_to_v2(spec.get("accessionIdentifier"))]
        coll = spec.get("collection") or {}
        fields = [str(number), w.component(eip), "", w.component(dt.codeable_to_v2(
            spec.get("type")))] + [""] * 12
        fields += [to_v2(coll.get("collectedDateTime", "")), to_v2(spec.get("receivedTime", ""))]
        return w.segment("SPM", fields)

    def obx(self, number: int, o: dict) -> list[str]:
        vtype, value, unit = _value(o)
        ranges = o.get("referenceRange") or [{}]
        rng = ranges[0]
        if "low" in rng and "high" in rng:
            rng_text = f"{dt.format_number(rng['low']['value'])}-" \
                       f"{dt.format_number(rng['high']['value'])}"
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
            str(number), vtype, w.component(dt.codeable_to_v2(o.get("code"))), "", value,
            w.component(unit_v2), w.component([rng_text]), w.repeated(flags), "", "",
            OBX_STATUS.get(o.get("status", ""), ""), "", "",
            to_v2(o.get("effectiveDateTime", "")), "", w.repeated(performers),
            w.component(dt.codeable_to_v2(o.get("method"))), w.component(dt.ei_to_v2(device)),
            to_v2(o.get("issued", ""))])
        return [seg] + self.notes(o)


def _value(o: dict) -> tuple[str, str, dict | None]:
    """OBX-2, encoded OBX-5 and the Quantity whose unit goes to OBX-6."""
    fmt = dt.format_number
    if "valueQuantity" in o:
        q = o["valueQuantity"]
        if q.get("comparator"):
            return "SN", w.component([q["comparator"], fmt(q["value"])]), q
        return "NM", fmt(q["value"]), q
    if "valueRange" in o:
        r = o["valueRange"]
        return "SN", w.component(["", fmt(r["low"]["value"]), "-", fmt(r["high"]["value"])]), \
            r["low"]
    if "valueRatio" in o:
        r = o["valueRatio"]
        return "SN", w.component(["", fmt(r["numerator"]["value"]), ":",
                                  fmt(r["denominator"]["value"])]), r["numerator"]
    if "valueString" in o:
        text = o["valueString"]
        return ("TX" if "\n" in text else "ST"), w.component([text]), None
    if "valueCodeableConcept" in o:
        return "CWE", w.component(dt.codeable_to_v2(o["valueCodeableConcept"])), None
    if "valueDateTime" in o:
        return "TS", to_v2(o["valueDateTime"]), None
    if "valueTime" in o:
        return "TM", o["valueTime"].replace(":", "")[:6], None
    return "", "", None
