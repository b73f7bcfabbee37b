"""Helpers for the security tests: a config with one system per role, tokens,
and a small HTTP client."""
from __future__ import annotations

import aiohttp

from support import base_config

ROLE_SYSTEMS = {"ehr": "ehr", "instrument": "poc", "lis": "lis", "admin": "admin", "auditor": "auditor"}


def security_config(**http) -> dict:
    """base_config plus one system per role (the names in ROLE_SYSTEMS)."""
    cfg = base_config()
    cfg["systems"] += [{"name": "admin", "roles": ["admin"]}, {"name": "auditor", "roles": ["auditor"]}]
    cfg["destinations"].append({"name": "lis-pull", "type": "pull", "system": "lis"})
    cfg["routes"][0]["to"].append("lis-pull")
    cfg["http"].update(http)
    return cfg


async def issue_tokens(gw, systems) -> dict[str, str]:
    from gateway import tokens
    out = {}
    async with gw.pool.acquire() as conn:
        for name in systems:
            out[name] = (await tokens.create(conn, name, label="test"))[1]
    return out


class Api:
    """A small HTTP client for one gateway (real sockets, aiohttp client)."""

    def __init__(self, gw, session: aiohttp.ClientSession, tokens: dict[str, str]):
        self.base = f"http://127.0.0.1:{gw.http_port}"
        self.gw = gw
        self.session = session
        self.tokens = tokens

    def headers(self, system: str | None) -> dict:
        return {"Authorization": f"Bearer {self.tokens[system]}"} if system else {}

    async def call(self, method: str, path: str, system: str | None = None, *, stream: bool = False,
                   headers: dict | None = None, **kw):
        """(status, body, headers); a ``stream`` response yields only its first chunk."""
        async with self.session.request(method, self.base + path,
                                        headers={**self.headers(system), **(headers or {})},
                                        allow_redirects=False, **kw) as r:
            if stream and r.status == 200:
                return r.status, await r.content.readany(), r.headers
            return r.status, await r.read(), r.headers
