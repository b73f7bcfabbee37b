"""Test peers for the FHIR API: an HTTP client with a token, order and
result bundles built here (independently of the gateway's code), and a
check that every resource returned parses with fhir.resources R4B."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import orjson
from fhir.resources.R4B import get_fhir_model_class

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
NLK = "urn:oid:2.16.578.1.12.4.1.1.7280"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ENH = "urn:oid:2.16.578.1.12.4.1.4.101"
HOSPITAL_LAB = "974589095"
SITE_EXT = "urn:labgate:fhir:collection-site"
AGE_EXT = "urn:labgate:fhir:specimen-age"
CRP = ("NPU19748", "P-C-reaktivt protein")
POTASSIUM = ("NPU03230", "P-Kalium")
CREATININE = ("NPU04998", "P-Kreatinin")


def order_config() -> dict:
    return {
        "gateway": {"name": "LABGATE", "facility": "TEST"},
        "http": {"host": "127.0.0.1", "port": 0},
        "systems": [
            {"name": "poc", "roles": ["instrument"]},
            {"name": "ehr", "roles": ["ehr"]},
            {"name": "other-ehr", "roles": ["ehr"]},
            {"name": "lis", "roles": ["lis"]},
            {"name": "lis2", "roles": ["lis"]},
        ],
        "listeners": [{"name": "mllp-in", "protocol": "mllp", "host": "127.0.0.1", "port": 0,
                       "system": "poc"}],
        "destinations": [
            {"name": "orders", "type": "orders", "system": "ehr"},
            {"name": "ehr-pull", "type": "pull", "system": "ehr"},
        ],
        "routes": [{"name": "poc-results", "sources": ["poc"], "message_types": ["ORU^R01"],
                    "to": ["orders"]}],
        "orders": {
            "poc_codes": ["NPU19748"],
            "referrals": [
                {"laboratory": "lis", "codes": ["NPU03230"], "performers": [f"{ENH}|{HOSPITAL_LAB}"]},
                {"laboratory": "lis2", "codes": ["NPU04998"]},
            ],
            "result_delivery": [{"system": "ehr", "destination": "ehr-pull"}],
        },
    }


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def service_request(code: tuple[str, str], *, key: str | None = None, placer: str | None = None,
                    specimen: str | None = None, patient: str = "urn:uuid:patient-1",
                    performer: str | None = None) -> dict:
    idents = [{"type": {"text": "RequesterDefinedUuid"}, "system": "urn:ietf:rfc:3986",
               "value": f"urn:uuid:{key or uuid.uuid4()}"}]
    if placer:
        idents.append({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                            "code": "PLAC"}]}, "system": "urn:labgate:placer:EPJ",
                       "value": placer})
    sr = {"resourceType": "ServiceRequest", "identifier": idents, "status": "active", "intent": "order",
          "code": {"coding": [{"system": NLK, "code": code[0], "display": code[1]}]},
          "subject": {"reference": patient},
          "requester": {"identifier": {"system": HPR, "value": "9144889"}, "display": "Magnar Koman"},
          "authoredOn": iso(datetime.now(timezone.utc) - timedelta(hours=1))}
    if specimen:
        sr["specimen"] = [{"reference": specimen}]
    if performer:
        sr["performer"] = [{"identifier": {"system": ENH, "value": performer}}]
    return sr


def specimen(tube: str, *, collected_minutes_ago: float = 20, site: str = "legekontor-1",
             request: str | None = None, patient: str = "urn:uuid:patient-1") -> dict:
    t = datetime.now(timezone.utc) - timedelta(minutes=collected_minutes_ago)
    sp = {"resourceType": "Specimen", "identifier": [{"system": "urn:labgate:specimen:EPJ", "value": tube}],
          "type": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.8351", "code": "P",
                               "display": "Plasma"}]},
          "subject": {"reference": patient},
          "collection": {"collectedDateTime": iso(t),
                         "collector": {"identifier": {"system": HPR, "value": "9144889"}},
                         "extension": [{"url": SITE_EXT, "valueString": site}]},
          "container": [{"type": {"text": "Li-heparin tube"}}]}
    if request:
        sp["request"] = [{"reference": request}]
    return sp


def patient(fnr: str = "13116900216") -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": FNR, "value": fnr}],
            "name": [{"family": "Danser", "given": ["Line"]}], "gender": "female", "birthDate": "1969-11-13"}


def transaction(*resources: tuple[str, dict]) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
        for url, res in resources]}


def crp_order(fnr: str = "13116900216", *, status: str = "active", hours_ago: float = 2) -> dict:
    """A CRP order for one patient, authored ``hours_ago`` hours ago."""
    sr = service_request(CRP)
    sr["status"] = status
    sr["authoredOn"] = iso(datetime.now(timezone.utc) - timedelta(hours=hours_ago))
    return transaction(("urn:uuid:patient-1", patient(fnr)), ("urn:uuid:sr-1", sr))


def mixed_order(*, poc_placer: str = "ORD-1", fnr: str = "13116900216", minutes_ago: float = 20) -> dict:
    """One POC analysis (CRP) and one referred analysis (potassium), each with a tube."""
    return transaction(
        ("urn:uuid:patient-1", patient(fnr)),
        ("urn:uuid:sr-crp", service_request(CRP, placer=poc_placer, specimen="urn:uuid:sp-crp")),
        ("urn:uuid:sr-k", service_request(POTASSIUM, specimen="urn:uuid:sp-k")),
        ("urn:uuid:sp-crp", specimen("TUBE-CRP-" + poc_placer, collected_minutes_ago=minutes_ago,
                                     request="urn:uuid:sr-crp")),
        ("urn:uuid:sp-k", specimen("TUBE-K-" + poc_placer, collected_minutes_ago=minutes_ago,
                                   request="urn:uuid:sr-k")),
    )


def lab_result(sr_id: str, *, value: float = 4.1, status: str = "final", fnr: str = "13116900216",
               code: tuple[str, str] = POTASSIUM) -> dict:
    t = datetime.now(timezone.utc)
    obs = {"resourceType": "Observation", "status": status,
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}],
           "code": {"coding": [{"system": NLK, "code": code[0], "display": code[1]}]},
           "subject": {"reference": "urn:uuid:pat"}, "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
           "effectiveDateTime": iso(t - timedelta(minutes=50)), "issued": iso(t),
           "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                             "code": "mmol/L"}}
    dr = {"resourceType": "DiagnosticReport", "status": status,
          "code": {"coding": [{"system": NLK, "code": code[0], "display": code[1]}]},
          "subject": {"reference": "urn:uuid:pat"}, "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
          "effectiveDateTime": iso(t - timedelta(minutes=50)), "issued": iso(t),
          "result": [{"reference": "urn:uuid:obs-1"}]}
    return transaction(("urn:uuid:pat", patient(fnr)), ("urn:uuid:obs-1", obs), ("urn:uuid:dr-1", dr))


def parses(resource: dict) -> None:
    """Raise unless ``resource`` (and a Bundle's entries) is valid FHIR R4 (R4B models)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


class Client:
    """A system calling the gateway over real HTTP with its bearer token."""

    def __init__(self, base: str, token: str):
        self.base = base
        self.token = token
        self._session: aiohttp.ClientSession | None = None

    async def _s(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(self, method: str, path: str, body=None, *, headers: dict | None = None,
                      raw: bytes | None = None, params=None) -> tuple[int, dict | None, dict]:
        h = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json",
             **(headers or {})}
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        s = await self._s()
        url = path if path.startswith("http") else self.base + path
        async with s.request(method, url, data=data, headers=h, params=params) as r:
            text = await r.read()
            parsed = orjson.loads(text) if text else None
            if parsed is not None:
                parses(parsed)
            return r.status, parsed, dict(r.headers)

    async def get(self, path, **kw):
        return await self.request("GET", path, **kw)

    async def post(self, path, body=None, **kw):
        return await self.request("POST", path, body, **kw)

    async def close(self):
        if self._session:
            await self._session.close()


def codes_of(outcome: dict) -> set[str]:
    return {c["code"] for i in outcome.get("issue", []) for c in i.get("details", {}).get("coding", [])}


def resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType") == rtype]


async def counts(pool) -> dict:
    """Rows in every order table (to prove a rejection stored no change)."""
    out = {}
    for t in ("fhir_patient", "fhir_service_request", "fhir_specimen", "fhir_task", "fhir_result", "outbox"):
        out[t] = await pool.fetchval(f"SELECT count(*) FROM {t}")
    return out
