"""Every HTTP endpoint × every role (and no credentials): allowed, or 401/403
with no patient data.

The endpoints are read from the running gateway's aiohttp router, so a new
endpoint is covered automatically; EXPECTED must name it (and who may call
it), or the test fails and says which entry is missing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from sec_helpers import ROLE_SYSTEMS
from support import mllp_exchange, oru_r01

FNR = "13116900216"        # the patient in oru_r01(); must never leak to a refused caller
PUBLIC = "public"
ORDER_TRANSACTION = b'{"resourceType": "Bundle", "type": "transaction", "entry": []}'


@dataclass(frozen=True)
class Spec:
    allowed: frozenset[str] | str            # roles, or PUBLIC
    query: str | dict[str, str] = ""         # per role: so an allowed caller reaches the real path
    body: bytes | None = None
    stream: bool = False                     # a long-lived response (server-sent events)
    sample: str | dict[str, str] = "1"       # value for {id} in the path (per role)

    def query_for(self, role: str | None) -> str:
        if isinstance(self.query, str):
            return self.query
        return self.query.get(role, next(iter(self.query.values())))


def roles(*names: str) -> frozenset[str]:
    return frozenset(names)


# (method, canonical route) -> who may call it. Keep in step with gateway/authz.py POLICY.
EXPECTED: dict[tuple[str, str], Spec] = {
    ("GET", "/healthz"): Spec(PUBLIC),
    ("GET", "/readyz"): Spec(PUBLIC),
    ("GET", "/metrics"): Spec(PUBLIC),
    ("GET", "/fhir/metadata"): Spec(PUBLIC),
    ("GET", "/fhir/Bundle"): Spec(roles("ehr", "lis"), {"ehr": "?destination=ehr-pull",
                                                        "lis": "?destination=lis-pull"}),
    ("POST", "/fhir/Bundle/{id}/$taken"): Spec(roles("ehr", "lis"), sample={"ehr": "1", "lis": "2"}),
    ("GET", "/fhir/AuditEvent"): Spec(roles("auditor"), "?patient=" + FNR),
    # [fhir] orders, specimens, results (gateway/fhir/routes.py)
    ("POST", "/fhir"): Spec(roles("ehr"), body=ORDER_TRANSACTION),
    ("POST", "/fhir/"): Spec(roles("ehr"), body=ORDER_TRANSACTION),
    ("POST", "/fhir/ServiceRequest"): Spec(roles("ehr"), body=b'{"resourceType": "ServiceRequest"}'),
    ("GET", "/fhir/ServiceRequest"): Spec(roles("ehr", "lis")),
    ("POST", "/fhir/ServiceRequest/$claim"): Spec(roles("lis")),
    ("GET", "/fhir/ServiceRequest/{id}"): Spec(roles("ehr", "lis")),
    ("POST", "/fhir/Task"): Spec(roles("lis"), body=b'{"resourceType": "Task"}'),
    ("GET", "/fhir/Specimen"): Spec(roles("ehr", "lis"), "?received=false"),
    ("GET", "/fhir/Specimen/{id}"): Spec(roles("ehr", "lis")),
    ("POST", "/fhir/Specimen/{id}/$receive"): Spec(roles("lis"), body=b"{}"),
    ("GET", "/fhir/DiagnosticReport"): Spec(roles("ehr", "lis")),
    ("GET", "/fhir/DiagnosticReport/{id}"): Spec(roles("ehr", "lis")),
    ("GET", "/fhir/Observation"): Spec(roles("ehr", "lis")),
    ("GET", "/fhir/Observation/{id}"): Spec(roles("ehr", "lis")),
    # [console] pages and session endpoints are public; the API is admin only.
    ("GET", "/console"): Spec(PUBLIC),
    ("GET", "/console/"): Spec(PUBLIC),
    ("POST", "/console/login"): Spec(PUBLIC, body=b"{}"),
    ("POST", "/console/logout"): Spec(PUBLIC),
    ("GET", "/api/admin/session"): Spec(roles("admin")),
    ("GET", "/api/admin/overview"): Spec(roles("admin")),
    ("GET", "/api/admin/events"): Spec(roles("admin"), stream=True),
    ("GET", "/api/admin/messages"): Spec(roles("admin")),
    ("POST", "/api/admin/messages/replay"): Spec(roles("admin"), body=b"{}"),
    ("GET", "/api/admin/messages/{id}"): Spec(roles("admin")),
    ("POST", "/api/admin/messages/{id}/replay"): Spec(roles("admin"), body=b"{}"),
    ("POST", "/api/admin/messages/{id}/retry"): Spec(roles("admin"), body=b"{}"),
    ("POST", "/api/admin/messages/{id}/discard"): Spec(roles("admin"), body=b"{}"),
    ("POST", "/api/admin/tables/reload"): Spec(roles("admin"), body=b"{}"),
    ("GET", "/api/admin/instruments"): Spec(roles("admin")),
    ("GET", "/api/admin/critical"): Spec(roles("admin")),
    ("POST", "/api/admin/critical/{id}/ack"): Spec(roles("admin"), body=b"{}"),
}


def _concrete(path: str, spec: Spec, role: str | None) -> str:
    sample = spec.sample if isinstance(spec.sample, str) else spec.sample.get(role, "1")
    return re.sub(r"\{[^}]+\}", sample, path)


def _routes(app):
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        canonical = route.resource.canonical if route.resource is not None else "?"
        yield route.method, canonical, "prefix" in info or "directory" in info


async def test_every_endpoint_has_an_expected_entry(api):
    missing = [f"{m} {p}" for m, p, static in _routes(api.gw.http_api.app)
               if not static and (m, p) not in EXPECTED]
    assert not missing, ("endpoints without an entry in tests/security/test_role_matrix.py EXPECTED "
                         f"(say which roles may call them): {missing}")


async def test_role_by_endpoint_matrix(api):
    acks = await mllp_exchange("127.0.0.1", api.gw.listeners["mllp-in"].port, [oru_r01("MATRIX-1")])
    assert b"MSA|AA" in acks[0]
    status, body, _ = await api.call("GET", "/fhir/Bundle?destination=ehr-pull", "ehr")
    assert status == 200 and FNR.encode() in body      # the data a refused caller must not see
    async with api.gw.pool.acquire() as conn:          # the samples for $taken above
        held = dict(await conn.fetch("SELECT destination, id FROM outbox ORDER BY id"))
    assert held == {"ehr-pull": 1, "lis-pull": 2}

    checked = []
    for method, path, static in _routes(api.gw.http_api.app):
        if static:
            continue
        spec = EXPECTED[(method, path)]
        for role in [None, *ROLE_SYSTEMS]:
            url = _concrete(path, spec, role) + spec.query_for(role)
            system = ROLE_SYSTEMS[role] if role else None
            status, body, _ = await api.call(method, url, system, data=spec.body, stream=spec.stream)
            where = f"{method} {url} as {role or 'no credentials'}: {status} {body[:200]!r}"
            if spec.allowed == PUBLIC or role in spec.allowed:
                assert status not in (401, 403), where
            else:
                assert status == (401 if role is None else 403), where
                assert FNR.encode() not in body and b'"Patient"' not in body, where
            checked.append(where)
    assert len(checked) >= 6 * len(EXPECTED) - 6


@pytest.mark.parametrize("system", ["other-ehr", "lis"])
async def test_a_system_cannot_read_another_systems_destination(api, system):
    await mllp_exchange("127.0.0.1", api.gw.listeners["mllp-in"].port, [oru_r01("MATRIX-2")])
    status, body, _ = await api.call("GET", "/fhir/Bundle?destination=ehr-pull", system)
    assert status == 403 and FNR.encode() not in body
    status, body, _ = await api.call("POST", "/fhir/Bundle/1/$taken", system)
    assert status in (403, 404) and FNR.encode() not in body


async def test_refusals_are_audited_as_denied(api):
    await api.call("GET", "/fhir/AuditEvent", "ehr")
    async with api.gw.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT actor, action, outcome FROM audit_log WHERE outcome = 'denied'")
    assert dict(row) == {"actor": "ehr", "action": "audit.read", "outcome": "denied"}


async def test_revoked_token_is_refused_on_the_next_request(api):
    from gateway import tokens
    status, _, _ = await api.call("GET", "/fhir/Bundle?destination=ehr-pull", "ehr")
    assert status == 200
    async with api.gw.pool.acquire() as conn:
        tid = await conn.fetchval("SELECT id FROM api_token WHERE system = 'ehr'")
        assert await tokens.revoke(conn, tid)
    status, body, _ = await api.call("GET", "/fhir/Bundle?destination=ehr-pull", "ehr")
    assert status == 401 and b"AUTH-INVALID" in body
