"""FHIR R4 model validation that cannot be crashed by the input.

fhir.resources raises ``KeyError`` (not a ValidationError) for a nested
resource of unknown type, e.g. ``contained: [{"resourceType": "Nope"}]`` or a
Bundle entry's resource (found by fuzzing, tests/fuzz). ``validate_resource``
turns every failure into messages, so a hostile body is a 4xx, never a 500.
"""
from __future__ import annotations

import pydantic
from fhir.resources.R4B import get_fhir_model_class


def validate_resource(value) -> list[str]:
    """Problems with ``value`` as an R4 resource (R4B models); [] when it is valid."""
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return ["not a FHIR resource (a JSON object with a resourceType)"]
    rtype = value["resourceType"]
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        return [f"unknown resource type {rtype[:60]!r}"]
    try:
        model.model_validate(value)
    except pydantic.ValidationError as e:
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}"[:300] for err in e.errors()[:50]]
    except KeyError as e:   # fhir_core: a nested resourceType it has no model for
        return [f"unknown nested resource type {str(e)[:60]}"]
    except (ValueError, TypeError, RecursionError) as e:
        return [f"{type(e).__name__}: {str(e)[:300]}"]
    return []
