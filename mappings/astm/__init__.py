"""ASTM E1394 messages -> canonical FHIR (``to_fhir``) and host-query answers
(``host_query``)."""
