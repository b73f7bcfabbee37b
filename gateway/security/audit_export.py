"""``labgate audit export``: the audit trail as NDJSON FHIR AuditEvents, for
the municipality's log archive (docs/security.md). The export is audited."""
from __future__ import annotations

import getpass
from typing import TextIO

import orjson
from multidict import MultiDict

from .. import audit
from ..authz import Principal
from .audit_api import build_query
from .auditevent import to_audit_event

PAGE = 1000


async def export(conn, out: TextIO, *, gateway_name: str, patient: str | None = None,
                 dates: list[str] = (), action: str | None = None) -> int:
    """Write every matching row as one AuditEvent JSON line; return how many."""
    params: MultiDict[str] = MultiDict()
    if patient:
        params["patient"] = patient
    for d in dates:
        params.add("date", d)
    if action:
        params["action"] = action
    params["_count"] = str(PAGE)
    after, n = 0, 0
    while True:
        params["_after"] = str(after)
        sql, args, _, _ = build_query(params)
        rows = await conn.fetch(sql, *args)
        for r in rows:
            out.write(orjson.dumps(to_audit_event(r, gateway_name=gateway_name)).decode() + "\n")
        n += len(rows)
        if len(rows) < PAGE:
            break
        after = rows[-1]["id"]
    who = Principal("gateway", f"cli:{getpass.getuser()}", frozenset({"auditor"}))
    await audit.record(conn, who=who, action="audit.export", resource_type="AuditEvent",
                       patient=patient, detail=f"exported {n}")
    return n


def add_parser(sub) -> None:
    """``labgate audit export``: registered by gateway/cli.py."""
    a = sub.add_parser("audit", help="export the audit trail (FHIR AuditEvent, one JSON per line)")
    a.add_argument("--config", required=True)
    asub = a.add_subparsers(dest="action", required=True)
    ex = asub.add_parser("export")
    ex.add_argument("--patient", help="a person number")
    ex.add_argument("--date", action="append", default=[],
                    help="FHIR date search value, repeatable (e.g. ge2025-03-01, lt2025-04-01)")
    ex.add_argument("--action", dest="audit_action", help="a labgate action, e.g. results.pull")
    ex.add_argument("--out", help="file to write (mode 0600); default stdout")
    a.set_defaults(func=_run)


def _run(args) -> int:
    import asyncio
    import os
    import sys

    from ..cli import _load_or_exit
    from .audit_api import SearchError, date_bounds
    config = _load_or_exit(args.config)
    try:
        for d in args.date:
            date_bounds(d)
    except SearchError as e:
        print(f"labgate audit: {e}", file=sys.stderr)
        return 2
    out = sys.stdout
    if args.out:
        out = os.fdopen(os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")
    try:
        n = asyncio.run(_export_async(config, args, out))
    except SearchError as e:
        print(f"labgate audit: {e}", file=sys.stderr)
        return 2
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} audit events", file=sys.stderr)
    return 0


async def _export_async(config, args, out) -> int:
    from ..oneshot_db import run_with_database
    return await run_with_database(config, lambda conn: export(
        conn, out, gateway_name=config.gateway.name, patient=args.patient,
        dates=args.date, action=args.audit_action))