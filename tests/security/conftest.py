"""Fixtures for the security tests: a gateway with one system per role and a
live bearer token for each (helpers in sec_helpers.py, PKI in sec_pki.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sec_helpers import Api, issue_tokens, security_config  # noqa: E402


@pytest.fixture
async def api(gateway_factory):
    gw = await gateway_factory(security_config())
    toks = await issue_tokens(gw, [s["name"] for s in security_config()["systems"]])
    async with aiohttp.ClientSession() as session:
        yield Api(gw, session, toks)
