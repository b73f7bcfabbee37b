"""The CapabilityStatement served at /fhir/metadata: only what is implemented."""
from __future__ import annotations

from datetime import date

from . import __version__


def capability_statement(base_url: str) -> dict:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "labgate", "version": __version__},
        "implementation": {"description": "labgate laboratory integration gateway", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": (
                "Results held for pull destinations are fetched as Bundle resources and "
                "marked taken with the $taken operation. See docs/api.md."),
            "security": {
                "cors": False,
                "description": "Bearer tokens issued per system (labgate token create).",
            },
            "resource": [{
                "type": "Bundle",
                "interaction": [{"code": "search-type"}],
                "searchParam": [
                    {"name": "destination", "type": "token",
                     "documentation": "Pull destination whose held result bundles to return (required)"},
                    {"name": "_count", "type": "number", "documentation": "Page size, 1-500"},
                ],
                "operation": [{
                    "name": "taken",
                    "definition": "urn:labgate:OperationDefinition/Bundle-taken",
                    "documentation": "POST /fhir/Bundle/{id}/$taken marks a held bundle as fetched",
                }],
            }] + _order_resources(),
            "interaction": [{"code": "transaction", "documentation": (
                "POST /fhir: a transaction Bundle of Patient, ServiceRequest and Specimen (an order; "
                "conditional create on the requester-defined identifier) or of DiagnosticReport and "
                "Observation (results, linked to their orders). See docs/fhir.md.")}],
        }],
    }


def _param(name: str, ptype: str, doc: str) -> dict:
    return {"name": name, "type": ptype, "documentation": doc}


_LAST_UPDATED = _param("_lastUpdated", "date", "gt/ge/lt/le prefixes; for polling")
_COUNT = _param("_count", "number", "Page size, 1-500")


def _order_resources() -> list[dict]:
    """Orders, specimens, claims and results (gateway/fhir, docs/fhir.md)."""
    return [
        {"type": "ServiceRequest",
         "interaction": [{"code": "create"}, {"code": "read"}, {"code": "search-type"}],
         "conditionalCreate": True,
         "searchInclude": ["ServiceRequest:specimen", "ServiceRequest:subject"],
         "searchParam": [
             _param("performer", "token", "Laboratory (system name) the order is referred to"),
             _param("status", "token", "ServiceRequest.status, comma-separated"),
             _param("claimed", "token", "labgate: false = no Task claims it yet"),
             _param("subject:identifier", "token", "Patient identifier system|value"),
             _param("identifier", "token", "Any order identifier (requester-defined, placer)"),
             _LAST_UPDATED, _COUNT],
         "operation": [{"name": "claim", "definition": "urn:labgate:OperationDefinition/ServiceRequest-claim",
                        "documentation": "POST /fhir/ServiceRequest/$claim?_count=n claims up to n "
                                         "unclaimed referrals (a Task each) and returns them"}]},
        {"type": "Specimen", "interaction": [{"code": "read"}, {"code": "search-type"}],
         "searchParam": [_param("site", "token", "Where it was collected"),
                         _param("received", "token", "false (required): the shipment view"), _COUNT],
         "operation": [{"name": "receive", "definition": "urn:labgate:OperationDefinition/Specimen-receive",
                        "documentation": "POST /fhir/Specimen/{id}/$receive records receivedTime and "
                                         "checks the stability limit"}]},
        {"type": "Task", "interaction": [{"code": "create"}],
         "documentation": "A claim: status accepted, focus ServiceRequest/{id}; 409 if already claimed"},
        {"type": "DiagnosticReport", "interaction": [{"code": "read"}, {"code": "search-type"}],
         "searchParam": [_param("subject:identifier", "token", "Patient identifier system|value"),
                         _param("based-on", "reference", "ServiceRequest/{id}"), _LAST_UPDATED, _COUNT]},
        {"type": "Observation", "interaction": [{"code": "read"}, {"code": "search-type"}],
         "searchParam": [_param("subject:identifier", "token", "Patient identifier system|value"),
                         _param("based-on", "reference", "ServiceRequest/{id}"), _LAST_UPDATED, _COUNT]},
    ]
