"""Shared configuration for the instrument tests: a gateway with an ASTM and a
POCT1-A listener, registered instruments and certified operators."""
from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp

from adapters.astm.e1381 import ReceiverConfig, SenderConfig

OSLO = ZoneInfo("Europe/Oslo")
ASTM_SERIAL = "AF2-000987"        # adapters/astm/scenarios.py CRP-POC
POCT_SERIAL = "000987"            # adapters/poct1a/simulator.py default
SIM_TX = SenderConfig(role="instrument", ack_timeout=0.5, instrument_contention_wait=0.1,
                      busy_retry=0.1)
SIM_RX = ReceiverConfig(frame_timeout=2.0)
HARD_LIMIT = 20.0


def oslo_now() -> datetime:
    """Local Norwegian wall-clock time, naive (as an analyser's clock reads)."""
    return datetime.now(OSLO).replace(tzinfo=None, microsecond=0)


def instrument_config(**extra) -> dict:
    cfg = {
        "gateway": {"name": "LABGATE", "facility": "TEST"},
        "http": {"host": "127.0.0.1", "port": 0},
        "systems": [
            {"name": "poc-astm", "roles": ["instrument"]},
            {"name": "poc-poct", "roles": ["instrument"]},
            {"name": "poc-other", "roles": ["instrument"]},
            {"name": "ehr", "roles": ["ehr"]},
        ],
        "listeners": [
            {"name": "astm-in", "protocol": "astm", "host": "127.0.0.1", "port": 0,
             "system": "poc-astm"},
            {"name": "poct-in", "protocol": "poct1a", "host": "127.0.0.1", "port": 0,
             "system": "poc-poct"},
            {"name": "astm-other", "protocol": "astm", "host": "127.0.0.1", "port": 0,
             "system": "poc-other"},
        ],
        "destinations": [{"name": "ehr-pull", "type": "pull", "system": "ehr"}],
        "routes": [{"name": "poc-results", "sources": ["poc-astm", "poc-poct", "poc-other"],
                    "message_types": ["ASTM", "POCT1A-OBS"], "to": ["ehr-pull"]}],
        "instruments": [
            {"serial": ASTM_SERIAL, "model": "CRP-POC", "site": "Sykehjem A", "protocol": "astm",
             "system": "poc-astm", "code_map": "crp-poc", "analyses": ["NPU19748"]},
            {"serial": "SN12345678", "model": "HBA1C-POC", "site": "Legekontor B",
             "protocol": "astm", "system": "poc-other", "code_map": "hba1c-poc",
             "analyses": ["NPU27300"]},
            {"serial": POCT_SERIAL, "model": "LABGATE-SIM", "site": "Sykehjem A",
             "protocol": "poct1a", "system": "poc-poct", "code_map": "labgate-sim",
             "analyses": ["NPU27300", "NPU19748"]},
        ],
        "operators": [
            {"id": "OP017", "name": "Kari Hansen", "hpr": "9144889",
             "analyses": ["NPU19748", "NPU27300"], "sites": ["Sykehjem A"]},
            {"id": "OP099", "name": "Elsewhere", "analyses": ["*"], "sites": ["Legekontor B"]},
        ],
    }
    cfg.update(extra)
    return cfg


async def pull(gw, destination: str = "ehr-pull") -> list[dict]:
    """The bundles the EHR fetches from its pull destination (over HTTP)."""
    from gateway import tokens
    async with gw.pool.acquire() as conn:
        token = (await tokens.create(conn, "ehr"))[1]
    url = f"http://127.0.0.1:{gw.http_port}/fhir/Bundle"
    async with aiohttp.ClientSession() as s:
        async with s.get(url, params={"destination": destination},
                         headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
            body = await r.json()
    return [e["resource"] for e in body.get("entry", [])]


def resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", [])
            if e["resource"]["resourceType"] == rtype]


async def verdicts(gw) -> list[tuple[str, str, list[str]]]:
    """(message_type, status, rejecting codes) of every stored message, in order."""
    import orjson
    rows = await gw.pool.fetch("SELECT message_type, status, verdict FROM message ORDER BY id")
    out = []
    for r in rows:
        issues = orjson.loads(r["verdict"])
        out.append((r["message_type"], r["status"],
                    [i["code"] for i in issues if i["severity"] in ("error", "fatal")]))
    return out


async def astm_sim(gw, scenario="crp", listener="astm-in", **kw) -> dict:
    from adapters.astm.simulator import run_simulation
    kw.setdefault("now", oslo_now())
    return await asyncio.wait_for(run_simulation(
        "127.0.0.1", gw.listeners[listener].port, scenario=scenario, sender_config=SIM_TX,
        receiver_config=SIM_RX, answer_timeout=5.0, byte_delay=0.0005, **kw), HARD_LIMIT)


async def poct_sim(gw, scenario="hba1c", **kw) -> dict:
    from adapters.poct1a.simulator import run_simulation
    return await asyncio.wait_for(run_simulation(
        "127.0.0.1", gw.listeners["poct-in"].port, scenario=scenario, **kw), HARD_LIMIT)
