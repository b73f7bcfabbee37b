"""HL7 v2 ⇄ FHIR R4: a lean parser, the ORU^R01 mapping both ways, and ACKs.

The inbound hot path (``parser.parse`` → ``to_fhir.to_bundle``) works on plain
strings and dicts; hl7apy and fhir.resources are only the reference the tests
hold it to.
"""
