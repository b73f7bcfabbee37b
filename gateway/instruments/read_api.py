"""Read functions for the console: plain dicts, no HTTP (docs/instruments.md).

The console's handlers call these after their own ``authz.require`` check
and audit; nothing here returns patient data (QC runs and registry rows
only). Times are timezone-aware ``datetime`` objects.
"""
from __future__ import annotations

from datetime import datetime, timezone

import asyncpg

from .registry import Registry


async def list_instruments(pool: asyncpg.Pool | asyncpg.Connection, registry: Registry,
                           now: datetime | None = None) -> list[dict]:
    """Every registered instrument, by site then serial::

        {"serial", "model", "site", "protocol", "system", "code_map", "enabled",
         "last_seen", "analyses": [{"analysis", "state": ok|locked|overdue|missing,
                                    "last_qc", "last_passed", "interval_minutes"}],
         "operators": [{"operator_id", "name", "hpr", "analyses", "expires"}]}
    """
    now = now or datetime.now(timezone.utc)
    rows = await pool.fetch("SELECT serial, last_seen FROM instrument ORDER BY site, serial")
    out = []
    for r in rows:
        inst = registry.instruments.get(r["serial"])
        if inst is None:
            continue
        out.append({
            "serial": inst.serial, "model": inst.model, "site": inst.site,
            "protocol": inst.protocol, "system": inst.system, "code_map": inst.code_map,
            "enabled": inst.enabled, "last_seen": r["last_seen"],
            "analyses": [{"analysis": a, **registry.qc_summary(inst.serial, a, now),
                          "interval_minutes": registry.interval(inst.serial, a)}
                         for a in sorted(inst.analyses)],
            "operators": [{"operator_id": o.operator_id, "name": o.name, "hpr": o.hpr,
                           "analyses": sorted(o.analyses), "expires": o.expires}
                          for o in registry.certified_operators(inst, now)],
        })
    return out


async def instrument(pool, registry: Registry, serial: str) -> dict | None:
    """One instrument as in :func:`list_instruments`, or None."""
    return next((i for i in await list_instruments(pool, registry) if i["serial"] == serial), None)


async def qc_history(pool: asyncpg.Pool | asyncpg.Connection, serial: str,
                     analysis: str | None = None, limit: int = 100) -> list[dict]:
    """QC runs of one instrument (optionally one analysis), newest first::

        {"id", "analysis", "material", "lot", "level", "value", "unit",
         "target_low", "target_high", "result": pass|fail|not-judged,
         "operator", "performed_at", "message_id"}
    """
    rows = await pool.fetch(
        "SELECT id, analysis, material, lot, level, value, unit, target_low, target_high, passed,"
        " operator, performed_at, message_id FROM qc_result"
        " WHERE instrument = $1 AND ($2::text IS NULL OR analysis = $2)"
        " ORDER BY performed_at DESC, id DESC LIMIT $3", serial, analysis, max(1, min(limit, 1000)))
    out = []
    for r in rows:
        d = dict(r)
        passed = d.pop("passed")
        d["result"] = {True: "pass", False: "fail", None: "not-judged"}[passed]
        out.append(d)
    return out
