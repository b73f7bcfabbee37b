"""Limits: requests per token per minute (429 + Retry-After + OperationOutcome
+ metric), request body size, connections per MLLP peer, security headers."""
from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from sec_helpers import Api, issue_tokens, security_config
from gateway.security.ratelimit import MAX_BUCKETS, RateLimiter


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_bucket_allows_a_burst_then_refills_at_the_rate():
    clock = Clock()
    rl = RateLimiter(60, clock=clock)          # one per second, burst 60
    assert all(rl.check("a") == 0 for _ in range(60))
    wait = rl.check("a")
    assert wait == pytest.approx(1.0)
    assert rl.check("b") == 0                  # another caller has its own bucket
    clock.t += 0.5
    assert rl.check("a") == pytest.approx(0.5)
    clock.t += 0.5
    assert rl.check("a") == 0
    assert rl.check("a") > 0


def test_zero_means_no_limit_and_table_is_bounded():
    assert RateLimiter(0).check("x") == 0
    rl = RateLimiter(1, clock=Clock())
    for i in range(MAX_BUCKETS + 50):
        rl.check(str(i))
    assert len(rl._buckets) == MAX_BUCKETS


async def _metric(api: Api, name: str) -> float:
    _, body, _ = await api.call("GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
async def limited(gateway_factory):
    gw = await gateway_factory(security_config(requests_per_minute=5))
    toks = await issue_tokens(gw, ["ehr", "lis"])
    async with aiohttp.ClientSession() as session:
        yield Api(gw, session, toks)


async def test_a_token_over_its_rate_gets_429_with_retry_after(limited):
    for _ in range(5):
        assert (await limited.call("GET", "/fhir/Bundle?destination=ehr-pull", "ehr"))[0] == 200
    status, body, headers = await limited.call("GET", "/fhir/Bundle?destination=ehr-pull", "ehr")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 12
    oo = orjson.loads(body)
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["code"] == "throttled"
    assert oo["issue"][0]["details"]["coding"][0]["code"] == "RATE-LIMITED"
    # Another token is not affected; health and metrics are not rate limited.
    assert (await limited.call("GET", "/fhir/Bundle?destination=lis-pull", "lis"))[0] == 200
    assert await _metric(limited, 'labgate_limit_exceeded_total{edge="http",limit="rate"}') == 1


async def test_unauthenticated_callers_share_a_bucket_per_address(limited):
    statuses = [(await limited.call("GET", "/fhir/Bundle"))[0] for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]


async def test_oversized_body_gets_413_in_the_callers_format_and_a_metric(gateway_factory):
    gw = await gateway_factory(security_config(max_body_bytes=2048))
    async with aiohttp.ClientSession() as s:
        api = Api(gw, s, {})
        status, body, _ = await api.call("POST", "/console/login", data=b"{" * 4096,
                                         headers={"Content-Type": "application/json"})
        assert status == 413, body
        assert orjson.loads(body)["error"] == "too_large"
        token = (await issue_tokens(gw, ["ehr"]))["ehr"]
        api.tokens = {"ehr": token}
        status, body, _ = await api.call("POST", "/fhir/ServiceRequest", "ehr", data=b"[" * 4096,
                                         headers={"Content-Type": "application/fhir+json"})
        assert status == 413, body
        oo = orjson.loads(body)
        assert oo["issue"][0]["details"]["coding"][0]["code"] == "BODY-TOO-LARGE"
        assert await _metric(api, 'labgate_limit_exceeded_total{edge="http",limit="body_size"}') == 2


async def test_security_headers_on_api_and_error_responses(api):
    for path, system in [("/healthz", None), ("/fhir/Bundle", None),
                         ("/fhir/Bundle?destination=ehr-pull", "ehr"), ("/fhir/AuditEvent", "ehr")]:
        status, _, h = await api.call("GET", path, system)
        assert h["X-Content-Type-Options"] == "nosniff", path
        assert h["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
        assert h["Referrer-Policy"] == "no-referrer", path
        if path.startswith("/fhir"):
            assert h["Cache-Control"] == "no-store", path
        assert "Strict-Transport-Security" not in h          # plain HTTP here


async def test_connections_per_mllp_peer_are_limited(gateway_factory):
    cfg = security_config()
    cfg["listeners"][0]["max_connections_per_peer"] = 2
    gw = await gateway_factory(cfg)
    port = gw.listeners["mllp-in"].port
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        data = await asyncio.wait_for(conns[2][0].read(), 5)   # the third is closed at once
        assert data == b""
        assert gw.listeners["mllp-in"].stats()["connections_refused"] == 1
    finally:
        for _, w in conns:
            w.close()
    async with aiohttp.ClientSession() as s:
        api = Api(gw, s, {})
        assert await _metric(api, 'labgate_listener_refusals_total{listener="mllp-in",reason="connections_refused"}') == 1
