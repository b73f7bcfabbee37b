"""Helpers for the console tests: a real gateway (real PostgreSQL, MLLP, HTTP)
with a real MLLP destination, console users made through gateway.users, and
an HTTP client that logs in the way the browser does (cookie + CSRF token)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from support import MllpReceiver, mllp_exchange, oru_r01

REPO = Path(__file__).resolve().parents[2]
ADMIN_PW = "correct horse battery staple"
AUDITOR_PW = "auditor password 1234"


def crp_table_dir(tmp_path: Path, plausible_high: str) -> Path:
    """A copy of the shipped rule tables with CRP's plausible upper limit changed."""
    d = tmp_path / f"tables-{plausible_high}"
    shutil.copytree(REPO / "mappings" / "tables", d)
    set_crp_high(d, plausible_high)
    return d


def set_crp_high(d: Path, plausible_high: str) -> None:
    set_plausible_high(d, "NPU19748", plausible_high)


def set_plausible_high(d: Path, analysis: str, plausible_high: str) -> None:
    path = d / "analyses.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith(analysis + ","):
            cells = line.split(",")
            cells[8] = plausible_high     # plausible_high column
            lines[i] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def glucose(control_id: str, value: str = "35") -> bytes:
    """An ORU^R01 with a plasma glucose beyond the critical limit (28 mmol/L)."""
    return oru_r01(control_id, code="NPU02192^P-Glukose^NLK", value=value, unit="mmol/L",
                   specimen="SER^Serum^HL70487")


@dataclass
class Console:
    gw: object
    receiver: MllpReceiver
    tables: Path
    base: str
    clients: list = field(default_factory=list)

    @property
    def mllp_port(self) -> int:
        return self.gw.listeners["mllp-in"].port

    async def send(self, *messages: bytes) -> list[bytes]:
        return await mllp_exchange("127.0.0.1", self.mllp_port, list(messages))

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.gw.db_url)

    async def add_user(self, name: str, password: str, roles: list[str]) -> None:
        from gateway import users
        conn = await self.db()
        try:
            await users.create_user(conn, name, password, roles)
        finally:
            await conn.close()

    async def client(self, name: str | None = None, password: str | None = None) -> "ApiClient":
        c = ApiClient(self.base)
        self.clients.append(c)
        if name:
            resp = await c.login(name, password)
            assert resp.status == 200, await resp.text()
        return c


class ApiClient:
    """Speaks to /api/admin like the console's JavaScript: session cookie + X-CSRF-Token."""

    def __init__(self, base: str):
        self.base = base
        self.http = aiohttp.ClientSession()
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.set_cookie_header = ""

    async def login(self, name: str, password: str) -> aiohttp.ClientResponse:
        resp = await self.http.post(self.base + "/console/login", json={"name": name, "password": password})
        if resp.status == 200:
            body = await resp.json()
            self.csrf = body["csrf"]
            self.set_cookie_header = resp.headers.get("Set-Cookie", "")
            self.cookie = resp.cookies["labgate_session"].value
        return resp

    def _headers(self, csrf: bool | str) -> dict:
        h = {}
        if self.cookie:
            h["Cookie"] = f"labgate_session={self.cookie}"
        if csrf is True and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        elif isinstance(csrf, str):
            h["X-CSRF-Token"] = csrf
        return h

    async def get(self, path: str, **kw) -> aiohttp.ClientResponse:
        return await self.http.get(self.base + path, headers=self._headers(False), **kw)

    async def post(self, path: str, body: dict | None = None, *, csrf: bool | str = True) -> aiohttp.ClientResponse:
        return await self.http.post(self.base + path, json=body if body is not None else {},
                                    headers=self._headers(csrf))

    async def close(self) -> None:
        await self.http.close()
