"""HL7 v2 lab messages → a FHIR R4 transaction Bundle of plain dicts.

Results (ORU^R01, ORU^R30/R31, OUL^R22): one Patient (PID), and per OBR a
ServiceRequest, its Specimens (SPM, else OBR-7/OBR-10), one Observation per
OBX and a DiagnosticReport. Orders (OML^O21, ORM^O01): per OBR a
ServiceRequest with its Specimens (``ServiceRequest.specimen``) and the
order's OBX as Observations in ``ServiceRequest.supportingInfo``; no report.

Group shapes read: several ORDER_OBSERVATION groups; SPM after the OBX of
its order or before them; SPM before the OBR (OUL^R22 v2.5+ SPECIMEN group,
whose own OBX become specimen-level Observations, and which is shared by all
OBRs until the next SPM); NTE after PID, OBR, OBX and SPM; patient-level OBX
(before any ORC/OBR: the v2.7+ PATIENT_OBSERVATION group — accepted in every
version, with a warning below 2.7) become Observations with only a subject.
People named in OBR-16/ORC-12, OBR-10 and OBX-16 become Practitioner
entries, one per person. fullUrls are ``urn:uuid:`` uuid5 of
``{control_id}/{type}/{index}``, so the same message always yields the same
bundle. Every segment that is not mapped is reported as an information issue
``HL7-SEGMENT-NOT-MAPPED``, never silently dropped.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from functools import lru_cache

from .. import systems
from ..fhir_strings import plain_spaces
from ..issue import Issue
from . import datatypes as dt
from .escape import unescape
from .parser import Message, Segment
from .timestamps import DEFAULT_TZ, to_fhir_date, to_fhir_datetime, to_fhir_instant

NAMESPACE = uuid.UUID("6f1c2a9e-4b7d-5e3f-9a51-0c8d2b7e4f10")
_NS_BYTES = NAMESPACE.bytes
# hex digit → the same digit with its top two bits set to 10 (uuid variant)
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}
SUPPORTED = {("ORU", "R01"): "result", ("ORU", "R30"): "result", ("ORU", "R31"): "result",
             ("OUL", "R22"): "result", ("OML", "O21"): "order", ("ORM", "O01"): "order"}

OBX_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "X": "cancelled",
              "I": "registered", "O": "registered", "R": "preliminary", "S": "preliminary",
              "U": "final", "D": "entered-in-error", "W": "entered-in-error", "N": "cancelled"}
OBR_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "X": "cancelled",
              "I": "registered", "O": "registered", "S": "partial", "A": "partial",
              "R": "partial"}
# ORC-1 order control when ORC-5 order status is empty (new orders carry only NW).
ORDER_CONTROL_STATUS = {"NW": "active", "XO": "active", "SC": "active", "CA": "revoked",
                        "OC": "revoked", "DC": "revoked", "HD": "on-hold", "OH": "on-hold"}
ANALYSIS_TIME_EXT = systems.ANALYSIS_TIME_EXT
ORC_STATUS = {"CM": "completed", "CA": "revoked", "DC": "revoked", "IP": "active",
              "SC": "active", "A": "active", "HD": "on-hold", "RP": "active"}
GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown",
          "N": "unknown"}
NAME_USE = {"L": "official", "D": "usual", "N": "nickname", "M": "maiden", "S": "anonymous"}
V3_FLAGS = {"L", "H", "LL", "HH", "N", "A", "AA", "<", ">", "LU", "HU", "U", "D", "B",
            "W", "S", "R", "I", "MS", "VS", "POS", "NEG", "IND", "DET", "ND", "E", "EX",
            "HX", "LX", "NS", "QCF", "TOX", "CAR", "NR", "RR", "EXP", "UNE", "IE", "OBX"}
TEXT_TYPES = {"ST", "TX", "FT"}
CODED_TYPES = {"CE", "CWE", "CNE", "CF", "CV"}
DATE_TYPES = {"DT", "TS", "DTM"}
_RANGE = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*-\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\Z")
_COMPARATOR = re.compile(r"\s*(<=|>=|<|>)\s*(.+)\Z")
_TM = re.compile(r"(\d{2})(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?\Z")


def resource_uuid(control_id: str, resource_type: str, index: int) -> str:
    """The deterministic fullUrl of the index-th resource of a type in a message:
    ``uuid5(NAMESPACE, f"{control_id}/{resource_type}/{index}")``, computed inline
    because ``uuid.uuid5`` costs a third of the mapping of a small message."""
    h = hashlib.sha1(_NS_BYTES + f"{control_id}/{resource_type}/{index}".encode()).hexdigest()
    # uuid5 keeps the first 16 bytes of the SHA-1, with the version nibble set
    # to 5 and the top two bits of byte 8 to the RFC 4122 variant (10xx).
    return f"urn:uuid:{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def to_bundle(msg: Message, *, default_tz: str = DEFAULT_TZ,
              sources: list[str] | None = None) -> tuple[dict, list[Issue]]:
    """Map a parsed message to a transaction Bundle.

    Unsupported message types give an empty transaction Bundle and one error
    issue ``HL7-UNSUPPORTED-MESSAGE-TYPE``. ``default_tz`` is the zone of
    timestamps that carry no offset. When ``sources`` is given it is filled
    with the segment each entry came from ("OBX[3]"), entry by entry, so that
    findings on the bundle can be reported at v2 locations (``locations``).
    """
    msh = msg.segments[0]
    kind = SUPPORTED.get((msh.value(9, comp=1), msh.value(9, comp=2)))
    if kind is None:
        h = msg.header()
        issue = Issue("error", "HL7-UNSUPPORTED-MESSAGE-TYPE", "MSH-9",
                      f"message type {h['message_type']!r} is not supported "
                      f"({', '.join(sorted('^'.join(k) for k in SUPPORTED))})",
                      f"Meldingstypen {h['message_type']!r} støttes ikke")
        return {"resourceType": "Bundle", "type": "transaction"}, [issue]
    mapper = _Mapper(msg, default_tz, kind)
    result = mapper.run()
    if msg.odd_space:   # rare: walk the bundle only when the text may hold one
        plain_spaces(result[0])
    if sources is not None:
        sources[:] = mapper.sources
    return result


class _Spec:
    """One SPM with its NTEs, the OBX that sit directly under it (OUL^R22 v2.5+
    SPECIMEN group) and, once written, its Specimen reference."""

    __slots__ = ("spm", "notes", "number", "results", "ref")

    def __init__(self, spm: Segment, number: int):
        self.spm, self.number = spm, number
        self.notes: list[Segment] = []
        self.results: list[list] = []     # [obx, notes, None, obx number]
        self.ref: dict | None = None


class _Group:
    """One ORDER_OBSERVATION / OBSERVATION_REQUEST group:
    ORC?, OBR, NTE*, (OBX NTE*)*, (SPM NTE* (OBX NTE*)*)* — or, in a
    specimen-first OUL^R22, the SPM that came before the OBR."""

    def __init__(self, orc: Segment | None, obr: Segment, number: int):
        self.orc, self.obr, self.number = orc, obr, number
        self.notes: list[Segment] = []
        self.collected = self.issued = ""   # OBR-7 and OBR-22 as FHIR, read once
        self.results: list[list] = []     # [obx, notes, _Spec or None, obx number]
        self.specimens: list[_Spec] = []


class _Mapper:
    def __init__(self, msg: Message, default_tz: str, kind: str = "result"):
        self.msg = msg
        self.tz = default_tz
        self.kind = kind
        self.cid = msg.control_id
        self.issues: list[Issue] = list(msg.issues)
        self.entries: list[dict] = []
        self.counts: dict[str, int] = {}
        self.people: dict[tuple, dict] = {}
        self.person_by_xcn: dict[tuple, dict | None] = {}   # raw XCN → people entry
        self.patient_ref: dict | None = None
        self.patient_obs: list[list] = []     # patient-level OBX: [obx, notes, None, number]
        self.sources: list[str] = []          # per entry: the segment it came from
        self.at = ""                          # the segment being mapped

    # ------------------------------------------------------------ structure

    def run(self) -> tuple[dict, list[Issue]]:
        pid, groups = self._structure()
        if pid is None:
            self._issue("error", "HL7-PID-MISSING", "PID", "the message has no PID segment",
                        "Meldingen mangler PID-segment")
        else:
            self._patient(pid)
        if not groups:
            self._issue("error", "HL7-OBR-MISSING", "OBR", "the message has no OBR segment",
                        "Meldingen mangler OBR-segment")
        for obx, ntes, _, number in self.patient_obs:
            self._observation(obx, ntes, number, None, None)
        for g in groups:
            self._group(g)
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}, \
            self.issues

    def _structure(self) -> tuple[Segment | None, list[_Group]]:
        pid: Segment | None = None
        groups: list[_Group] = []
        orc: Segment | None = None
        note_target: list | None = None     # where an NTE goes
        spec_first: _Spec | None = None     # OUL^R22: the SPM that heads the next OBRs
        spm_first_mode = False
        seen: dict[str, int] = {}
        for seg in self.msg.segments[1:]:
            name = seg.name
            seen[name] = n = seen.get(name, 0) + 1
            cur = groups[-1] if groups else None
            if name == "OBX":
                target = self._obx_target(cur, orc, spec_first, pid, f"OBX[{n}]")
                if target is None:
                    note_target = None
                    continue
                target.append([seg, [], None, n])
                if cur is not None and target is cur.results and cur.specimens \
                        and not spm_first_mode:
                    target[-1][2] = cur.specimens[-1]
                note_target = target[-1][1]
            elif name == "NTE" and note_target is not None:
                note_target.append(seg)
            elif name == "PID":
                if pid is None:
                    pid, note_target = seg, None
                else:
                    self._issue("error", "HL7-PID-REPEATED", f"PID[{n}]",
                                "more than one patient in one message is not supported")
            elif name == "ORC" and self._orc_follows_obr(cur, orc):
                cur.orc, note_target = seg, cur.notes     # OUL^R22: OBR, ORC?, NTE*
            elif name == "ORC":
                if orc is not None:
                    self._not_mapped(orc, f"ORC[{n - 1}]", "an ORC without an OBR")
                orc, note_target = seg, None
            elif name == "OBR":
                groups.append(_Group(orc, seg, n))
                if spec_first is not None:
                    groups[-1].specimens.append(spec_first)
                orc, note_target = None, groups[-1].notes
            elif name == "SPM":
                spec = _Spec(seg, n)
                if cur is None or spm_first_mode or orc is not None:
                    spm_first_mode, spec_first = True, spec   # heads the OBRs that follow
                else:
                    cur.specimens.append(spec)
                note_target = spec.notes
            else:
                self._not_mapped(seg, f"{name}[{n}]")
        if orc is not None:
            self._not_mapped(orc, f"ORC[{seen['ORC']}]", "an ORC without an OBR")
        return pid, groups

    def _orc_follows_obr(self, cur: _Group | None, orc: Segment | None) -> bool:
        """In OUL^R22 the ORC comes after its OBR (ORDER: OBR, ORC?, NTE*, …)."""
        return self.msg.segments[0].value(9) == "OUL" and cur is not None \
            and cur.orc is None and orc is None and not cur.results

    def _obx_target(self, cur, orc, spec_first, pid, loc) -> list | None:
        """Where an OBX belongs: its order group, the specimen before the next
        OBR (OUL^R22), or the patient (v2.7+ PATIENT_OBSERVATION)."""
        if spec_first is not None and (cur is None or spec_first not in cur.specimens):
            return spec_first.results
        if cur is not None and orc is None:
            return cur.results
        if cur is None and orc is None and pid is not None:
            version = self.msg.version
            if _version_at_least(version, (2, 7)):
                self._issue("information", "HL7-OBX-PATIENT-LEVEL", loc,
                            "an OBX directly under the patient is mapped as a patient "
                            "observation (v2.7+ PATIENT_OBSERVATION)")
            else:
                self._issue("warning", "HL7-OBX-PATIENT-LEVEL", loc,
                            f"an OBX before any OBR is not in the v{version} structure; "
                            "mapped as a patient observation",
                            "OBX før OBR er tolket som en observasjon om pasienten")
            return self.patient_obs
        self._issue("error", "HL7-OBX-BEFORE-OBR", loc,
                    "an OBX comes after an ORC but before its OBR", "OBX før OBR")
        return None

    def _not_mapped(self, seg: Segment, loc: str, what: str = "") -> None:
        self._issue("information", "HL7-SEGMENT-NOT-MAPPED", loc,
                    f"{what or 'segment ' + seg.name} is not mapped to FHIR",
                    f"segmentet {seg.name} er ikke overført til FHIR")

    # ------------------------------------------------------------ resources

    def _issue(self, severity: str, code: str, location: str, text: str, text_nb: str = ""):
        self.issues.append(Issue(severity, code, location, text, text_nb))

    def _add(self, resource: dict, if_none_exist: str = "") -> dict:
        rtype = resource["resourceType"]
        index = self.counts.get(rtype, 0)
        self.counts[rtype] = index + 1
        url = resource_uuid(self.cid, rtype, index)
        request = {"method": "POST", "url": rtype}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        self.entries.append({"fullUrl": url, "resource": resource, "request": request})
        self.sources.append(self.at)
        return {"reference": url}

    def _person(self, seg: Segment, field: int, rep: int = 0) -> dict | None:
        """A reference to the Practitioner an XCN names, added on its first mention."""
        xcn = tuple(seg.components(field, rep))     # the same person recurs in OBX-16
        if xcn not in self.person_by_xcn:
            self.person_by_xcn[xcn] = self._practitioner(seg, field, rep)
        ref = self.person_by_xcn[xcn]
        return dict(ref) if ref is not None else None

    def _practitioner(self, seg: Segment, field: int, rep: int) -> dict | None:
        prac = dt.xcn_practitioner(seg.component_values(field, rep),
                                   seg.subcomponents(field, rep, 9))
        if prac is None:
            return None
        key = dt.practitioner_key(prac)
        if key not in self.people:
            ident = prac.get("identifier", [{}])[0]
            cond = f"identifier={ident['system']}|{ident['value']}" \
                if ident.get("system") == systems.HPR else ""
            self.people[key] = self._add(prac, cond)
        return self.people[key]

    def _datetime(self, seg: Segment, field: int, loc: str, instant: bool = False) -> str:
        raw = seg.value(field)
        if not raw:
            return ""
        value = to_fhir_instant(raw, self.tz) if instant else to_fhir_datetime(raw, self.tz)
        if value is None:
            self._issue("warning", "HL7-TS-INVALID", f"{loc}-{field}",
                        f"{seg.name}-{field} is not a readable timestamp" +
                        (" with minutes (needed for an instant)" if instant else ""))
            return ""
        return value

    def _notes(self, ntes: list[Segment]) -> list[dict]:
        out = []
        for nte in ntes:
            text = "\n".join(unescape(r, nte.seps) for r in nte.repetitions(3))
            if text.strip():
                out.append({"text": text})
        return out

    def _patient(self, pid: Segment) -> None:
        self.at = "PID[1]"
        p: dict = {"resourceType": "Patient"}
        idents = []
        for r in range(pid.repetition_count(3)):
            comps = pid.component_values(3, r) + [""] * 5
            ident = dt.cx_identifier(comps[0], pid.subcomponents(3, r, 4), comps[4])
            if ident:
                idents.append(ident)
        dt.put(p, "identifier", idents)
        names = []
        for r in range(pid.repetition_count(5)):
            name = _human_name(pid.component_values(5, r))
            if name:
                names.append(name)
        dt.put(p, "name", names)
        raw_birth = pid.value(7)
        if raw_birth:
            birth = to_fhir_date(raw_birth)
            if birth is None:
                self._issue("warning", "HL7-TS-INVALID", "PID-7", "PID-7 birth date is not a date")
            dt.put(p, "birthDate", birth)
        dt.put(p, "gender", GENDER.get(pid.value(8).strip().upper(), ""))
        national = next((i for i in idents if i["system"] in dt.NATIONAL_IDS), None)
        cond = f"identifier={national['system']}|{national['value']}" if national else ""
        self.patient_ref = self._add(p, cond)

    def _subject(self, res: dict) -> None:
        if self.patient_ref:
            res["subject"] = dict(self.patient_ref)

    def _group(self, g: _Group) -> None:
        obr, loc = g.obr, f"OBR[{g.number}]"
        g.collected = self._datetime(obr, 7, loc)
        g.issued = self._datetime(obr, 22, loc, instant=True)
        self.at = loc
        sr_ref, sr = self._service_request(g)
        specimen_refs = self._specimens(g, sr_ref)
        results = []
        for obx, ntes, spec, number in g.results:
            ref = spec.ref if spec is not None else \
                (specimen_refs[0] if specimen_refs else None)
            results.append(self._observation(obx, ntes, number, sr_ref, ref, g))
        self.at = loc
        if self.kind == "order":
            dt.put(sr, "specimen", [dict(r) for r in specimen_refs])
            dt.put(sr, "supportingInfo", results)
            return
        dr: dict = {"resourceType": "DiagnosticReport"}
        dr["basedOn"] = [dict(sr_ref)]
        dr["status"] = OBR_STATUS.get(obr.value(25).strip().upper(), "unknown")
        dr["category"] = [{"coding": [{"system": dt.V2_0074,
                                       "code": dt.clean_code(obr.value(24)) or "LAB"}]}]
        dr["code"] = self._code(obr, 4, loc)
        self._subject(dr)
        dt.put(dr, "effectiveDateTime", g.collected)
        dt.put(dr, "issued", g.issued)
        dt.put(dr, "specimen", [dict(r) for r in specimen_refs])
        dt.put(dr, "result", results)
        self._add(dr)

    def _code(self, seg: Segment, field: int, seg_loc: str) -> dict:
        cc = dt.codeable(seg.component_values(field))
        if cc is None:
            self._issue("warning", f"HL7-{seg.name}-{field}-MISSING", f"{seg_loc}-{field}",
                        f"{seg.name}-{field} (what was examined) is empty")
            cc = {"text": "unknown"}
        return cc

    def _service_request(self, g: _Group) -> dict:
        obr, orc = g.obr, g.orc
        sr: dict = {"resourceType": "ServiceRequest"}
        idents = []
        for field, kind, code in ((2, "placer", "PLAC"), (3, "filler", "FILL")):
            parts = obr.component_values(field)
            if not (parts and parts[0].strip()) and orc is not None:
                parts = orc.component_values(field)
            ident = dt.ei_identifier(parts, kind)
            if ident:
                idents.append({"type": {"coding": [{"system": systems.V2_0203, "code": code}]},
                               **ident})
        dt.put(sr, "identifier", idents)
        status = ""
        if orc is not None:
            status = ORC_STATUS.get(orc.value(5).strip().upper(), "") or \
                ORDER_CONTROL_STATUS.get(orc.value(1).strip().upper(), "")
        # An order message's OBR without ORC status is a new order (implicit NW).
        sr["status"] = status or ("active" if self.kind == "order" else "unknown")
        sr["intent"] = "order"
        dt.put(sr, "code", dt.codeable(obr.component_values(4)))
        self._subject(sr)
        requester = self._person(obr, 16)
        if requester is None and orc is not None:
            requester = self._person(orc, 12)
        dt.put(sr, "requester", requester)
        if g.notes:
            dt.put(sr, "note", self._notes(g.notes))
        if self.kind == "order" and orc is not None:
            dt.put(sr, "authoredOn", self._datetime(orc, 9, f"ORC[{g.number}]"))
        return self._add(sr), sr

    def _specimens(self, g: _Group, sr_ref: dict) -> list[dict]:
        self._group_number = g.number
        collected = g.collected
        collector = self._person(g.obr, 10)
        if not g.specimens:
            if not collected and collector is None:
                return []
            return [self._specimen(None, [], sr_ref, collected, collector, "")]
        refs = []
        for spec in g.specimens:
            if spec.ref is None:
                spec.ref = self._specimen(spec.spm, spec.notes, sr_ref, collected, collector,
                                          f"SPM[{spec.number}]")
                for obx, ntes, _, number in spec.results:
                    self._observation(obx, ntes, number, None, spec.ref, g)
            else:       # one specimen for several orders (OUL^R22)
                self._resource(spec.ref)["request"].append(dict(sr_ref))
            refs.append(spec.ref)
        return refs

    def _resource(self, ref: dict) -> dict:
        url = ref["reference"]
        return next(e["resource"] for e in reversed(self.entries) if e["fullUrl"] == url)

    def _specimen(self, spm: Segment | None, ntes: list[Segment], sr_ref: dict,
                  collected: str, collector: dict | None, loc: str) -> dict:
        self.at = loc or f"OBR[{self._group_number}]"
        sp: dict = {"resourceType": "Specimen"}
        if spm is not None:
            ident = dt.ei_identifier(spm.subcomponents(2, 0, 1), "specimen")
            dt.put(sp, "identifier", [ident] if ident else [])
            dt.put(sp, "accessionIdentifier",
                   dt.ei_identifier(spm.subcomponents(2, 0, 2), "accession"))
            dt.put(sp, "type", dt.codeable(spm.component_values(4)))
            collected = self._datetime(spm, 17, loc) or collected
            dt.put(sp, "receivedTime", self._datetime(spm, 18, loc))
        self._subject(sp)
        sp["request"] = [dict(sr_ref)]
        coll: dict = {}
        dt.put(coll, "collector", collector)
        dt.put(coll, "collectedDateTime", collected)
        dt.put(sp, "collection", coll)
        if ntes:
            dt.put(sp, "note", self._notes(ntes))
        return self._add(sp)

    def _observation(self, obx: Segment, ntes: list[Segment], number: int,
                     sr_ref: dict | None, spec: dict | None, g: _Group | None = None) -> dict:
        """One OBX. Without ``sr_ref`` it is a patient- or specimen-level observation."""
        loc = self.at = f"OBX[{number}]"
        ob: dict = {"resourceType": "Observation"}
        if sr_ref is not None:
            ob["basedOn"] = [dict(sr_ref)]
        ob["status"] = OBX_STATUS.get(obx.value(11).strip().upper(), "unknown")
        ob["category"] = [{"coding": [{"system": systems.OBS_CATEGORY, "code": "laboratory"}]}]
        ob["code"] = self._code(obx, 3, loc)
        self._subject(ob)
        effective = self._datetime(obx, 14, loc) or (g.collected if g is not None else "")
        if effective:
            ob["effectiveDateTime"] = effective
        analysed = self._datetime(obx, 19, loc)
        if analysed:
            ob["extension"] = [{"url": ANALYSIS_TIME_EXT, "valueDateTime": analysed}]
        issued = to_fhir_instant(obx.value(19), self.tz) if analysed else ""
        issued = issued or (g.issued if g is not None else "")
        if issued:
            ob["issued"] = issued
        performers = self._performers(obx)
        if performers:
            ob["performer"] = performers
        unit = self._unit(obx)
        self._value(ob, obx, unit, loc)
        interpretation = self._interpretation(obx)
        if interpretation:
            ob["interpretation"] = interpretation
        if ntes:
            dt.put(ob, "note", self._notes(ntes))
        dt.put(ob, "method", dt.codeable(obx.component_values(17)))
        device = dt.ei_identifier(obx.component_values(18), "device")
        if device:
            ob["device"] = {"identifier": device}
        if spec:
            ob["specimen"] = dict(spec)
        rng = self._range(obx.value(7), unit)
        if rng:
            ob["referenceRange"] = [rng]
        return self._add(ob)

    def _performers(self, obx: Segment) -> list[dict]:
        """OBX-16, each person once per mention."""
        performers = []
        for r in range(obx.repetition_count(16)):
            person = self._person(obx, 16, r)
            if person:
                performers.append(person)
        return performers

    @staticmethod
    def _interpretation(obx: Segment) -> list[dict]:
        """OBX-8 abnormal flags, as v3 ObservationInterpretation where the code is one."""
        out = []
        for r in range(obx.repetition_count(8)):
            flag = dt.clean_code(obx.value(8, r))
            if flag:
                system = systems.V3_INTERPRETATION if flag in V3_FLAGS else dt.V2_0078
                out.append({"coding": [{"system": system, "code": flag}]})
        return out

    # ------------------------------------------------------------ values

    @staticmethod
    def _unit(obx: Segment) -> dict:
        c = obx.component_values(6) + ["", "", ""]
        return dict(_unit_items(c[0], c[1], c[2]))

    @staticmethod
    def _quantity(value, unit: dict, comparator: str = "") -> dict:
        q: dict = {"value": value}
        if comparator:
            q["comparator"] = comparator
        q.update(unit)
        return q

    def _value(self, ob: dict, obx: Segment, unit: dict, loc: str) -> None:
        vtype = obx.value(2).strip().upper()
        reps = obx.repetitions(5)
        if not reps or not any(reps):
            return
        if vtype in TEXT_TYPES:
            text = "\n".join(unescape(r, obx.seps) for r in reps)
            dt.put(ob, "valueString", text if text.strip() else "")
            return
        first = reps[0]
        if len(reps) > 1 and len([r for r in reps if r]) > 1:   # FHIR has one value[x]
            self._issue("warning", "HL7-OBX-5-REPEATED", f"{loc}-5",
                        f"OBX-5 of type {vtype or '?'} repeats; only the first value is mapped")
        if vtype == "NM":
            text = unescape(first, obx.seps)
            m = _COMPARATOR.match(text)
            num = dt.number(m.group(2) if m else text)
            if num is not None:
                ob["valueQuantity"] = self._quantity(num, unit, m.group(1) if m else "")
                return
            self._issue("warning", "HL7-OBX-NM-NOT-NUMERIC", f"{loc}-5",
                        "OBX-5 of type NM is not a number; kept as text")
        elif vtype == "SN":
            if self._structured_numeric(ob, obx.component_values(5), unit):
                return
            self._issue("warning", "HL7-OBX-SN-UNREADABLE", f"{loc}-5",
                        "OBX-5 of type SN could not be read as a number, range or ratio; "
                        "kept as text")
        elif vtype in CODED_TYPES:
            dt.put(ob, "valueCodeableConcept", dt.codeable(obx.component_values(5)))
            return
        elif vtype in DATE_TYPES:
            value = to_fhir_datetime(obx.value(5), self.tz)
            if value:
                ob["valueDateTime"] = value
                return
            self._issue("warning", "HL7-TS-INVALID", f"{loc}-5",
                        f"OBX-5 of type {vtype} is not a readable timestamp; kept as text")
        elif vtype == "TM":
            m = _TM.match(obx.value(5).strip())
            if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
                ob["valueTime"] = f"{m.group(1)}:{m.group(2)}:{m.group(3) or '00'}"
                return
        else:
            self._issue("information", "HL7-OBX-VALUE-AS-TEXT", f"{loc}-2",
                        f"OBX-5 of type {vtype or '(none)'} is kept as text")
        text = unescape(first, obx.seps)
        dt.put(ob, "valueString", text if text.strip() else "")

    def _structured_numeric(self, ob: dict, comps: list[str], unit: dict) -> bool:
        comps = comps + ["", "", "", ""]
        cmp_, n1, sep, n2 = comps[0].strip(), dt.number(comps[1]), comps[2].strip(), \
            dt.number(comps[3])
        if n1 is None:
            return False
        if sep == "-" and n2 is not None and cmp_ in ("", "="):
            ob["valueRange"] = {"low": self._quantity(n1, unit),
                                "high": self._quantity(n2, unit)}
            return True
        if sep in (":", "/") and n2 is not None and cmp_ in ("", "="):
            ob["valueRatio"] = {"numerator": self._quantity(n1, unit),
                                "denominator": {"value": n2}}
            return True
        if not sep and not comps[3].strip() and cmp_ in ("", "=", "<", ">", "<=", ">="):
            ob["valueQuantity"] = self._quantity(n1, unit, cmp_ if cmp_ != "=" else "")
            return True
        return False

    def _range(self, text: str, unit: dict) -> dict | None:
        if not text.strip():
            return None
        limits = _range_limits(text)
        if limits is not None:
            low, high = limits
            return {"low": self._quantity(low, unit), "high": self._quantity(high, unit)}
        return {"text": text}


@lru_cache(maxsize=1024)     # units recur message after message
def _unit_items(code: str, text: str, system_name: str) -> tuple:
    """OBX-6 as the unit, system and code of a Quantity, in (key, value) pairs."""
    text = text or code
    code, system_name = dt.clean_code(code), system_name.strip()
    items = []
    if text:
        items.append(("unit", text))
    if code:
        system = systems.UCUM if system_name in ("", "UCUM") else dt.code_system(system_name)
        items.append(("system", system))
        items.append(("code", code))
    return tuple(items)


@lru_cache(maxsize=4096)     # pure; the same reference ranges recur
def _range_limits(text: str) -> tuple[int | float, int | float] | None:
    """(low, high) of an OBX-7 "low-high" range; None when it is not one."""
    m = _RANGE.match(text)
    if m:
        low, high = dt.number(m.group(1)), dt.number(m.group(2))
        if low is not None and high is not None:
            return low, high
    return None


def _human_name(xpn: list[str]) -> dict | None:
    """XPN components (unescaped) → HumanName; None when it names no one."""
    family, given1, given2, suffix, prefix, _, use = (xpn + [""] * 7)[:7]
    if not (family or given1 or given2 or suffix or prefix):
        return None
    name: dict = {}
    use = NAME_USE.get(use.strip().upper(), "")
    if use:
        name["use"] = use
    if family:
        name["family"] = family
    if given1 or given2:
        name["given"] = [g for g in (given1, given2) if g]
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    return name


def _version_at_least(version: str, floor: tuple[int, int]) -> bool:
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) >= floor
    except ValueError:
        return False
