"""The console's window on instruments, read through gateway.instruments.

The instruments package (its own issue) owns the registry, QC state and
operator certificates; the console only reads it, through
``gateway.instruments.list_instruments(conn) -> list[dict]`` when that
function exists (docs/instruments.md). Each dict is expected to carry
``name``, ``site``, ``protocol``, ``last_seen``, ``qc`` (a list of
``{"analysis", "state", ...}``) and ``operators``; unknown keys are shown
as they are. Until the package provides it, the pages show an empty state.
"""
from __future__ import annotations

import importlib
import inspect

from .. import logging as log_setup

log = log_setup.get("labgate.console")


def _reader():
    try:
        mod = importlib.import_module("gateway.instruments")
    except ImportError:
        return None
    return getattr(mod, "list_instruments", None)


async def listing(gw) -> dict:
    """{"available": bool, "instruments": [...]} for the Instruments page."""
    read = _reader()
    if read is None:
        return {"available": False, "instruments": []}
    try:
        async with gw.pool.acquire() as conn:
            got = read(conn)
            rows = await got if inspect.isawaitable(got) else got
    except Exception as e:  # another package's failure must not take the console down
        log.warning("console.instruments_unavailable", error=type(e).__name__)
        return {"available": False, "instruments": [], "error": type(e).__name__}
    return {"available": True, "instruments": [_plain(r) for r in rows]}


async def locked(gw) -> list[dict]:
    """Instruments with at least one analysis locked by QC (for the overview and alerts)."""
    data = await listing(gw)
    out = []
    for inst in data["instruments"]:
        qc = inst.get("qc") or []
        bad = [q for q in qc if isinstance(q, dict) and str(q.get("state", "")).lower() == "locked"]
        if bad or inst.get("locked"):
            out.append({"name": inst.get("name"), "site": inst.get("site"),
                        "analyses": [q.get("analysis") for q in bad]})
    return out


def _plain(row) -> dict:
    d = dict(row) if not isinstance(row, dict) else row
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in d.items()}
