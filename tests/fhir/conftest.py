"""Fixtures for the FHIR order/result API tests: a gateway with order routing
configured, and HTTP clients holding real bearer tokens."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fhirkit import Client, order_config  # noqa: E402


@pytest.fixture
async def fhir_gw(gateway_factory):
    """(gateway, {system: Client}) for the systems of order_config()."""
    from gateway import tokens
    gw = await gateway_factory(order_config())
    clients = {}
    base = f"http://127.0.0.1:{gw.http_port}"
    async with gw.pool.acquire() as conn:
        for system in ("ehr", "other-ehr", "lis", "lis2", "poc"):
            clients[system] = Client(base, (await tokens.create(conn, system))[1])
    yield gw, clients
    for c in clients.values():
        await c.close()
