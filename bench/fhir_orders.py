"""FHIR R4 ServiceRequest bodies for the REST path of the benchmark: a lab
order (CRP) for a patient with a valid fødselsnummer, from an HPR-numbered
requester, with a unique identifier per order."""
from __future__ import annotations

from bench.messages import person


def service_request(i: int) -> dict:
    number, birth, _ = person(i)
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.2.bench", "value": f"BENCH-ORD-{i}"}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007",
                                  "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7280", "code": "NPU19748",
                             "display": "P-C-Reaktivt protein"},
                            {"system": "http://loinc.org", "code": "1988-5"}]},
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": number}},
        "requester": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144889"}},
        "authoredOn": "2025-03-14T09:20:00+01:00",
    }
