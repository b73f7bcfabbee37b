"""Every fault the simulators inject, against the real gateway: it never
hangs, never crashes, and serves the next clean session."""
from __future__ import annotations

from datetime import timedelta

import aiohttp

from adapters.astm.simulator import FAULTS as ASTM_FAULTS
from adapters.poct1a.simulator import FAULTS as POCT_FAULTS

from inst_support import astm_sim, instrument_config, oslo_now, poct_sim


async def _ready(gw) -> bool:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{gw.http_port}/readyz") as r:
            return r.status == 200


async def test_every_astm_fault_leaves_the_gateway_serving(gateway_factory):
    gw = await gateway_factory(instrument_config())
    start = oslo_now() - timedelta(hours=1)
    for i, fault in enumerate(sorted(ASTM_FAULTS)):
        now = start + timedelta(minutes=2 * i)
        await astm_sim(gw, "crp", faults={fault}, fault_frame=2, now=now)
        clean = await astm_sim(gw, "crp", now=now + timedelta(minutes=1))
        assert clean["ok"], (fault, clean["transfers"])
        assert await _ready(gw), fault
    # Retransmitted frames (drop-ack, bad-checksum) never store a message twice.
    dupes = await gw.pool.fetchval(
        "SELECT count(*) FROM (SELECT sha FROM (SELECT content_sha256 AS sha FROM message"
        " WHERE duplicate_of IS NULL) m GROUP BY sha HAVING count(*) > 1) d")
    assert dupes == 0
    assert gw.listeners["astm-in"].stats()["connections_current"] == 0


async def test_every_poct_fault_leaves_the_gateway_serving(gateway_factory):
    gw = await gateway_factory(instrument_config())
    for fault in sorted(POCT_FAULTS):
        t = await poct_sim(gw, "hba1c", faults={fault}, qc_first=True, timeout=5.0,
                           chunk_delay=0.0005)
        assert t["ended_by"], fault
        if fault in ("malformed_xml", "entity_bomb", "oversized"):
            assert t["gateway_errors"], (fault, t)
        clean = await poct_sim(gw, "hba1c", qc_first=True)
        assert clean["completed"] and clean["gateway_errors"] == [], (fault, clean)
        assert await _ready(gw), fault
    assert gw.listeners["poct-in"].stats()["connections_open"] == 0
