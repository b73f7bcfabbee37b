"""Builds the clinical-safety cases' messages from cases.toml entries.

HL7 v2 cases fill an ORU^R01 template (one OBR, one OBX, one SPM, optional
extra OBX) with the case's overrides; times are minutes relative to now, so
"future" and "too old" mean the same on every run. FHIR cases build small
canonical bundles (orders, and results whose details the HL7 v2 mapping does
not carry yet). Each case gets its own valid person number so that the
history-based rules (delta, duplicate order) never see another case's patient.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

from mappings import systems
from mappings.identifiers import person_check_digits

# case id -> passed?, filled by the test, printed by conftest.py as the pass rate.
OUTCOMES: dict[str, bool] = {}

HL7_DEFAULTS = {
    "pnr": None,                         # None: a fresh valid FNR for the case
    "id_type": "NNNOR",
    "authority": "FREG&2.16.578.1.12.4.1.4.1&ISO",
    "requester": "9144889^Koman^Magnar^^^^^^HPR&2.16.578.1.12.4.1.4.4&ISO",
    "code": "NPU19748", "display": "P-CRP", "cs": "NLK",
    "vtype": "NM", "value": "27", "unit": "mg/L",
    "collected_min": -30, "analysed_min": -20, "received_min": None,
    "operator": "OP017^Hansen^Kari", "device": "AF2-000987^ACME-CRP",
    "specimen": "BLDC^Blood capillary^HL70487",
    "extra_obx": [],
}

_TEMPLATE = [
    "MSH|^~\\&|POCDM|LEGEVAKT^4210001^L|LABGW|KOMMUNE^4210000^L|{now}||ORU^R01^ORU_R01|{ctrl}|P|2.5.1|||AL|NE||UNICODE UTF-8",
    "PID|1||{pnr}^^^{authority}^{id_type}||Danser^Line||19691113|F",
    "OBR|1|ORD-{ctrl}^EPJ|POC-{ctrl}^POCDM|POCPANEL^POC-panel^L|||{collected}|||||||||{requester}||||||{analysed}|||F",
    "OBX|1|{vtype}|{code}^{display}^{cs}||{value}|{unit}^{unit}^UCUM|||||F|||{collected}||{operator}||{device}|{analysed}",
]
_SPM = "SPM|1|LID{ctrl}||{specimen}|||||||||||||{collected}|{received}"


def ts(now: datetime, minutes) -> str:
    """HL7 TS (UTC with offset) ``minutes`` from now; '' when minutes is None/''."""
    if minutes is None or minutes == "":
        return ""
    return (now + timedelta(minutes=minutes)).strftime("%Y%m%d%H%M%S+0000")


def fhir_time(now: datetime, minutes) -> str | None:
    if minutes is None or minutes == "":
        return None
    return (now + timedelta(minutes=minutes)).isoformat(timespec="seconds")


def person_number(n: int, kind: str = "fnr") -> str:
    """The n-th valid person number of a kind (fnr, dnr, hnr, fhnr), born 1950-1999."""
    born = date(1950 + n % 50, 1 + n % 12, 1 + n % 28)
    day, month = born.day, born.month
    if kind == "dnr":
        day += 40
    elif kind == "hnr":
        month += 40
    for individual in range(n % 400 + 100, 500):    # 100-499: born 1900-1999
        base = (f"{day:02d}{month:02d}{born.year % 100:02d}{individual:03d}"
                if kind != "fhnr" else f"8{(n * 7919 + individual) % 10**8:08d}")
        check = person_check_digits(base)
        if check is not None:
            return base + check
    raise ValueError("no valid number found")


def resolve_pnr(case_no: int, pnr: str | None) -> str:
    """None: the case's own FNR; "@dnr", "@hnr", "@fhnr": the case's own number of that kind."""
    if pnr is None:
        return person_number(case_no)
    if pnr.startswith("@"):
        return person_number(case_no, pnr[1:])
    return pnr


def hl7_message(case_no: int, overrides: dict, now: datetime, ctrl: str) -> bytes:
    v = {**HL7_DEFAULTS, **overrides}
    v["pnr"] = resolve_pnr(case_no, v["pnr"])
    fill = {k: v[k] for k in ("pnr", "id_type", "authority", "requester", "code", "display",
                              "cs", "vtype", "value", "unit", "operator", "device", "specimen")}
    fill.update(now=ts(now, 0), ctrl=ctrl, collected=ts(now, v["collected_min"]),
                analysed=ts(now, v["analysed_min"]), received=ts(now, v["received_min"]))
    segs = [s.format(**fill) for s in _TEMPLATE]
    for n, extra in enumerate(v["extra_obx"], start=2):
        segs.append(f"OBX|{n}|" + extra.format(**fill))
    segs.append(_SPM.format(**fill))
    return ("\r".join(segs) + "\r").encode()


class _Bundle:
    def __init__(self):
        self.entries: list[dict] = []

    def add(self, res: dict) -> dict:
        url = f"urn:uuid:{uuid.uuid4()}"
        self.entries.append({"fullUrl": url, "resource": res,
                             "request": {"method": "POST", "url": res["resourceType"]}})
        return {"reference": url}

    def bundle(self) -> dict:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


FHIR_ORDER_DEFAULTS = {
    "pnr": None, "patient": True, "requester": True, "code": "NPU19748",
    "code_system": systems.NLK, "referred": False, "specimen_type": "BLDV",
    "authored_min": 0,
}


def fhir_order(case_no: int, overrides: dict, now: datetime) -> dict:
    """An order bundle: Patient, Practitioner, ServiceRequest (+ Organization, Specimen)."""
    v = {**FHIR_ORDER_DEFAULTS, **overrides}
    b = _Bundle()
    pat = b.add({"resourceType": "Patient", "identifier": [
        {"system": systems.FNR, "value": v["pnr"] or person_number(case_no)}]})
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
          "code": {"coding": [{"system": v["code_system"], "code": v["code"]}]} if v["code"]
          else {"text": "something"}}
    if v["patient"]:
        sr["subject"] = pat
    if v["requester"]:
        sr["requester"] = b.add({"resourceType": "Practitioner", "identifier": [
            {"system": systems.HPR, "value": "9144889"}]})
    if v["referred"]:
        sr["performer"] = [b.add({"resourceType": "Organization", "name": "Sentrallaboratoriet"})]
    authored = fhir_time(now, v["authored_min"])
    if authored:
        sr["authoredOn"] = authored
    sr_ref = b.add(sr)
    if v["specimen_type"]:
        b.add({"resourceType": "Specimen", "request": [sr_ref],
               "type": {"coding": [{"system": systems.V2_0487, "code": v["specimen_type"]}]}})
    return b.bundle()


FHIR_RESULT_DEFAULTS = {
    "pnr": None, "code": "NPU19748", "value": 27, "unit": "mg/L", "specimen_type": "BLDC",
    "collected_min": -30, "analysed_min": -20, "temperature": None, "condition": None,
    "containers": [], "lot": None, "lot_expiry_days": None,
}


def fhir_result(case_no: int, overrides: dict, now: datetime) -> dict:
    """A result bundle with the Specimen and Device details v2 cannot carry yet."""
    v = {**FHIR_RESULT_DEFAULTS, **overrides}
    b = _Bundle()
    pat = b.add({"resourceType": "Patient", "identifier": [
        {"system": systems.FNR, "value": v["pnr"] or person_number(case_no)}]})
    sp = {"resourceType": "Specimen", "subject": pat,
          "type": {"coding": [{"system": systems.V2_0487, "code": v["specimen_type"]}]},
          "collection": {"collectedDateTime": fhir_time(now, v["collected_min"])}}
    if v["temperature"]:
        sp["extension"] = [{"url": "urn:labgate:fhir:specimen-storage-temperature",
                            "valueCode": v["temperature"]}]
    if v["condition"]:
        sp["condition"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0493",
                                        "code": v["condition"]}]}]
    if v["containers"]:
        sp["container"] = [{"type": {"coding": [{"code": c}]}} for c in v["containers"]]
    sp_ref = b.add(sp)
    ob = {"resourceType": "Observation", "status": "final", "subject": pat, "specimen": sp_ref,
          "performer": [{"identifier": {"value": "OP017"}}],
          "code": {"coding": [{"system": systems.NLK, "code": v["code"]}]},
          "effectiveDateTime": fhir_time(now, v["collected_min"]),
          "valueQuantity": {"value": v["value"], "unit": v["unit"], "code": v["unit"],
                            "system": systems.UCUM},
          "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time",
                         "valueDateTime": fhir_time(now, v["analysed_min"])}]}
    if v["lot"]:
        expiry = (now + timedelta(days=v["lot_expiry_days"])).date().isoformat()
        ob["device"] = b.add({"resourceType": "Device", "lotNumber": v["lot"],
                              "expirationDate": expiry,
                              "identifier": [{"value": "AF2-000987"}]})
    b.add(ob)
    return b.bundle()


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)
