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
            }],
        }],
    }
