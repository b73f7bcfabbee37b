"""Open point-of-care orders, for answering ASTM host queries (Q records).

Orders live in the FHIR part of the gateway (migration 0004:
``fhir_service_request`` + ``fhir_specimen``, always present: migrations
run in order). This module is the one place the instrument path reads them,
through :func:`open_orders_for`.
"""
from __future__ import annotations

import asyncpg


_BY_SPECIMEN = """
SELECT sp.ident_values AS specimens, sr.patient_ident, sr.code
FROM fhir_specimen sp
JOIN fhir_service_request sr ON sr.id = ANY(sp.service_request_ids)
WHERE sp.ident_values && $1::text[] AND sr.status = 'active' AND sr.routing = 'poc'
ORDER BY sr.seq
"""
_BY_PATIENT = """
SELECT ARRAY(SELECT unnest(sp.ident_values) FROM fhir_specimen sp
             WHERE sr.id = ANY(sp.service_request_ids) LIMIT 1) AS specimens,
       sr.patient_ident, sr.code
FROM fhir_service_request sr
WHERE sr.patient_ident = ANY($1::text[]) AND sr.status = 'active' AND sr.routing = 'poc'
ORDER BY sr.seq
"""


async def open_orders_for(conn: asyncpg.Connection | asyncpg.Pool, specimen_ids: list[str],
                          patient_ids: list[str]) -> list[dict]:
    """Active point-of-care orders for these specimens (else these patients).

    Returns ``[{"specimen_id", "patient_id", "tests": [NLK codes]}]``, one
    dict per specimen, the shape ``mappings.astm.host_query.answer_records``
    takes (after the caller translates NLK codes to instrument codes).
    """
    rows = await conn.fetch(_BY_SPECIMEN, list(specimen_ids)) if specimen_ids else []
    if not rows and patient_ids:
        rows = await conn.fetch(_BY_PATIENT, list(patient_ids))
    wanted = set(specimen_ids)
    orders: dict[tuple[str, str], dict] = {}
    for r in rows:
        specimens = list(r["specimens"] or [])
        sid = next((s for s in specimens if s in wanted), specimens[0] if specimens else "")
        key = (sid, r["patient_ident"] or "")
        order = orders.setdefault(key, {"specimen_id": sid, "patient_id": r["patient_ident"] or "",
                                        "tests": []})
        if r["code"] and r["code"] not in order["tests"]:
            order["tests"].append(r["code"])
    return list(orders.values())
