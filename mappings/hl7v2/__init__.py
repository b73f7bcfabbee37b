"""HL7 v2 ⇄ FHIR R4: a lean parser, lab messages both ways, and ACKs.

Inbound (``parser.parse`` → ``to_fhir.to_bundle``): ORU^R01, ORU^R30/R31,
OUL^R22, OML^O21 and ORM^O01, on plain strings and dicts. Outbound
(``from_fhir``): ``bundle_to_oru_r01`` and ``bundle_to_oml_o21``, lean ER7
writers. hl7apy and fhir.resources are only the reference the tests hold
both directions to. ``locations`` turns findings on a bundle into v2
segment/field locations for ERR-2; ``ack`` builds ACKs.
"""
