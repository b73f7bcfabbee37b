"""The audit trail: every read and write of patient data, and every admin action.

Rows go to the append-only ``audit_log`` table (migration 0002). The patient
column is for the auditor's search; it never reaches a log line.
"""
from __future__ import annotations

import asyncpg

from .authz import Principal


async def record(conn: asyncpg.Connection | asyncpg.Pool, *, who: Principal | None, action: str,
                 outcome: str = "success", resource_type: str | None = None,
                 resource_id: str | None = None, patient: str | None = None,
                 peer: str | None = None, detail: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor_kind, actor, action, resource_type, resource_id, patient,"
        " peer, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        who.kind if who else "anonymous", who.name if who else "-", action, resource_type,
        resource_id, patient, peer, outcome, detail)
