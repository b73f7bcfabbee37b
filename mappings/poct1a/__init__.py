"""POCT1-A2 (CLSI POCT01-A2) observation messages -> canonical FHIR R4 and QC events."""
from .to_fhir import poct_to_bundle

__all__ = ["poct_to_bundle"]
