"""The console's window on instruments, read through gateway.instruments.

The instruments package owns the registry, QC state and operator
certificates (docs/instruments.md "Read API"); the console only reads it,
through ``read_api.list_instruments`` and ``read_api.qc_history``, with the
registry of the running gateway (``gw.instruments.registry``). A gateway
without instruments shows an empty state.
"""
from __future__ import annotations

from .. import logging as log_setup

log = log_setup.get("labgate.console")
RECENT_QC = 5


def _registry(gw):
    return getattr(getattr(gw, "instruments", None), "registry", None)


async def listing(gw) -> dict:
    """{"available": bool, "instruments": [...]} for the Instruments page: each
    instrument with its analyses' QC state, certified operators and recent QC runs."""
    registry = _registry(gw)
    if registry is None:
        return {"available": False, "instruments": []}
    from ..instruments import read_api
    rows = await read_api.list_instruments(gw.pool, registry)
    for r in rows:
        r["qc_recent"] = await read_api.qc_history(gw.pool, r["serial"], limit=RECENT_QC)
    return {"available": True, "instruments": [_plain(r) for r in rows]}


async def locked(gw) -> list[dict]:
    """Instruments with at least one analysis locked by QC (for the overview and alerts)."""
    registry = _registry(gw)
    if registry is None:
        return []
    from ..instruments import read_api
    out = []
    for inst in await read_api.list_instruments(gw.pool, registry):
        bad = [a["analysis"] for a in inst.get("analyses", []) if a.get("state") == "locked"]
        if bad:
            out.append({"name": inst["serial"], "model": inst.get("model"), "site": inst.get("site"),
                        "analyses": bad})
    return out


def _plain(value):
    """datetimes as ISO strings, recursively (the JSON the page reads)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return value.isoformat() if hasattr(value, "isoformat") else value
