"""Security controls shared by the gateway's edges (issue 8).

- :mod:`.jsonsafe`   ``load_json``: JSON with size and depth limits
- :mod:`.secretfiles` secrets from the environment or owner-only files
- :mod:`.tls`        HTTPS server context (TLS 1.2+) and client certificate → system
- :mod:`.ratelimit`  token bucket per caller (requests per minute)
- :mod:`.headers`    security headers on every HTTP response
- :mod:`.auditevent` audit_log rows as FHIR R4 AuditEvent resources
- :mod:`.audit_api`  ``GET /fhir/AuditEvent`` for the auditor role
- :mod:`.metrics`    the ``labgate_limit_exceeded`` counter and listener refusals

Authorization itself stays in :mod:`gateway.authz`; the audit trail in
:mod:`gateway.audit`.
"""
from .jsonsafe import JsonLimitError, load_json

__all__ = ["JsonLimitError", "load_json"]
