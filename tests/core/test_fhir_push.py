"""Results pushed to an EHR that takes FHIR: a real HTTP server receives the
transaction bundle; failures are retried, then dead-lettered."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from fhir.resources.R4B.bundle import Bundle

from support import base_config, field, mllp_exchange, oru_r01


class FhirEhr:
    """A FHIR server of an EHR: answers with the statuses it is told to."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[tuple[dict, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = None

    async def start(self) -> "FhirEhr":
        app = web.Application()
        app.router.add_post("/fhir", self._post)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def _post(self, request: web.Request):
        self.received.append((await request.json(), request.headers.get("Authorization", "")))
        status = self.statuses.pop(0) if self.statuses else 200
        if status >= 400:
            return web.json_response({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "processing", "diagnostics": "EHR says no"}]}, status=status)
        return web.json_response({"resourceType": "Bundle", "type": "transaction-response"}, status=status)

    async def stop(self):
        await self.runner.cleanup()


def _config(port: int, max_attempts: int = 5) -> dict:
    cfg = base_config(pull=False)
    cfg["destinations"].append({
        "name": "ehr-fhir", "type": "fhir", "system": "ehr", "base_url": f"http://127.0.0.1:{port}/fhir",
        "token_env": "LABGATE_TEST_EHR_TOKEN", "max_attempts": max_attempts,
        "backoff_initial_s": 0.05, "backoff_max_s": 0.1, "ack_timeout_s": 5})
    cfg["routes"].append({"name": "to-ehr", "sources": ["poc"], "to": ["ehr-fhir"]})
    return cfg


async def _wait(pool, state, timeout=15.0):
    async def poll():
        while await pool.fetchval("SELECT count(*) FROM outbox WHERE state = $1", state) < 1:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


async def test_result_is_posted_as_fhir_transaction_after_a_server_error(gateway_factory, monkeypatch):
    monkeypatch.setenv("LABGATE_TEST_EHR_TOKEN", "ehr-secret")
    ehr = await FhirEhr([503, 200]).start()
    gw = await gateway_factory(_config(ehr.port))
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01("FP-1")])
    assert field(ack, "MSA", 1) == "AA"
    await _wait(gw.pool, "delivered")
    assert len(ehr.received) == 2                      # 503, then retried
    bundle, auth = ehr.received[-1]
    assert auth == "Bearer ehr-secret"
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    assert bundle["identifier"]["value"].startswith("LG")   # stable across retries
    assert ehr.received[0][0]["identifier"] == bundle["identifier"]
    codes = [c["code"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
             for c in e["resource"]["code"]["coding"]]
    assert "NPU19748" in codes
    outcomes = [r["outcome"] for r in await gw.pool.fetch("SELECT outcome FROM delivery_attempt ORDER BY id")]
    assert outcomes == ["error", "delivered"]
    await ehr.stop()


async def test_rejecting_fhir_server_dead_letters_with_its_reason(gateway_factory):
    ehr = await FhirEhr([422] * 10).start()
    gw = await gateway_factory(_config(ehr.port, max_attempts=2))
    await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01("FP-2")])
    await _wait(gw.pool, "dead")
    assert "HTTP 422: EHR says no" in await gw.pool.fetchval("SELECT last_error FROM outbox")
    assert len(ehr.received) == 2
    await ehr.stop()


def test_fhir_destination_needs_base_url():
    from gateway.config import ConfigError, parse
    cfg = _config(1)
    cfg["destinations"][-1]["base_url"] = "ftp://x"
    with pytest.raises(ConfigError, match="needs base_url"):
        parse(cfg)
