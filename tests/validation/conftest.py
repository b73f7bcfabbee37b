"""Builders for small canonical FHIR bundles, checked against the R4B models."""
from __future__ import annotations

import copy
import uuid
from datetime import datetime

import pytest
from fhir.resources.R4B.bundle import Bundle

from gateway.validation import (ANALYSIS_TIME_EXT, STORAGE_TEMPERATURE_EXT, RuleContext,
                                validate)
from mappings import systems
from mappings.tables_loader import default_tables

NOW = datetime.fromisoformat("2025-03-14T10:00:00+01:00")
COLLECTED = "2025-03-14T09:25:00+01:00"
ANALYSED = "2025-03-14T09:30:00+01:00"


def fhir_valid(bundle: dict) -> dict:
    """Fail the test unless ``bundle`` is a valid R4(B) Bundle; return it."""
    Bundle.model_validate(copy.deepcopy(bundle))
    return bundle


class BundleBuilder:
    """Collects resources and hands out urn:uuid references to them."""

    def __init__(self):
        self.entries: list[dict] = []

    def add(self, resource: dict) -> dict:
        url = f"urn:uuid:{uuid.uuid4()}"
        self.entries.append({"fullUrl": url, "resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"]}})
        return {"reference": url}

    def patient(self, value="13116900216", system=systems.FNR, assigner=None) -> dict:
        ident = {"system": system, "value": value}
        if assigner:
            ident["assigner"] = {"display": assigner}
        return self.add({"resourceType": "Patient", "identifier": [ident]})

    def practitioner(self, value="9144889", system=systems.HPR) -> dict:
        return self.add({"resourceType": "Practitioner",
                         "identifier": [{"system": system, "value": value}]})

    def device(self, serial="AF2-000987") -> dict:
        return self.add({"resourceType": "Device", "identifier": [{"value": serial}]})

    def specimen(self, type_code="BLDC", type_system=systems.V2_0487, collected=COLLECTED,
                 containers=(), temperature=None, patient=None) -> dict:
        res = {"resourceType": "Specimen"}
        if type_code:
            res["type"] = {"coding": [{"system": type_system, "code": type_code}]}
        if patient:
            res["subject"] = patient
        if collected:
            res["collection"] = {"collectedDateTime": collected}
        if containers:
            res["container"] = [{"type": {"coding": [{"code": c}]}} for c in containers]
        if temperature:
            res["extension"] = [{"url": STORAGE_TEMPERATURE_EXT, "valueCode": temperature}]
        return self.add(res)

    def observation(self, code="NPU19748", value=27, unit="mg/L", *, system=systems.NLK,
                    loinc=None, patient=None, specimen=None, performer=None, device=None,
                    effective=COLLECTED, analysed=ANALYSED, issued=None,
                    comparator=None, value_quantity=True) -> dict:
        coding = [{"system": system, "code": code}] if code else []
        if loinc:
            coding.append({"system": systems.LOINC, "code": loinc})
        res = {"resourceType": "Observation", "status": "final",
               "code": {"coding": coding} if coding else {"text": "unknown"}}
        if patient:
            res["subject"] = patient
        if effective:
            res["effectiveDateTime"] = effective
        if issued:
            res["issued"] = issued
        if analysed:
            res["extension"] = [{"url": ANALYSIS_TIME_EXT, "valueDateTime": analysed}]
        if value_quantity and value is not None:
            vq = {"value": value}
            if unit:
                vq.update(unit=unit, system=systems.UCUM, code=unit)
            if comparator:
                vq["comparator"] = comparator
            res["valueQuantity"] = vq
        if specimen:
            res["specimen"] = specimen
        if performer:
            res["performer"] = [performer]
        if device:
            res["device"] = device
        return self.add(res)

    def service_request(self, patient, requester=None, code="NPU19748") -> dict:
        res = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
               "subject": patient,
               "code": {"coding": [{"system": systems.NLK, "code": code}]}}
        if requester:
            res["requester"] = requester
        return self.add(res)

    def bundle(self) -> dict:
        """The transaction bundle, validated against the R4B Bundle model."""
        return fhir_valid({"resourceType": "Bundle", "type": "transaction",
                           "entry": self.entries})


def poc_bundle(code="NPU19748", value=27, unit="mg/L", specimen_type="BLDC", **obs) -> dict:
    """A typical POC result: patient, requester, specimen and one Observation."""
    b = BundleBuilder()
    pat = b.patient()
    b.service_request(pat, requester=b.practitioner())
    sp = b.specimen(type_code=specimen_type, patient=pat)
    b.observation(code, value, unit, patient=pat, specimen=sp, **obs)
    return b.bundle()


def context(**kw) -> RuleContext:
    kw.setdefault("now", NOW)
    kw.setdefault("tables", default_tables())
    return RuleContext(**kw)


def codes(bundle, ctx=None) -> list[str]:
    return [i.code for i in validate(bundle, ctx or context())]


@pytest.fixture
def builder():
    return BundleBuilder


@pytest.fixture
def h():
    """The helpers above, for tests (conftest is not importable under importlib mode)."""
    from types import SimpleNamespace
    return SimpleNamespace(B=BundleBuilder, poc=poc_bundle, ctx=context, codes=codes,
                           NOW=NOW, COLLECTED=COLLECTED, ANALYSED=ANALYSED,
                           fhir_valid=fhir_valid, validate=validate)
