"""The audit trail of a result's whole journey is complete, exportable as FHIR
AuditEvent (auditor only, itself audited), and cannot be altered: not by the
table's owner (trigger), not by the gateway's own role (no privilege, not the
owner, so it cannot drop the trigger either)."""
from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from gateway.security.audit_api import SearchError, date_bounds
from support import mllp_exchange, oru_r01

FNR = "13116900216"


async def _journey(api) -> int:
    """A result arrives over MLLP, the EHR pulls it and marks it taken."""
    ack = (await mllp_exchange("127.0.0.1", api.gw.listeners["mllp-in"].port, [oru_r01("AUD-1")]))[0]
    assert b"MSA|AA" in ack
    status, body, _ = await api.call("GET", "/fhir/Bundle?destination=ehr-pull", "ehr")
    assert status == 200
    outbox_id = orjson.loads(body)["entry"][0]["resource"]["id"]
    status, _, _ = await api.call("POST", f"/fhir/Bundle/{outbox_id}/$taken", "ehr")
    assert status == 200
    return int(outbox_id)


async def _export(api, query: str) -> dict:
    status, body, headers = await api.call("GET", "/fhir/AuditEvent" + query, "auditor")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/fhir+json")
    return orjson.loads(body)


async def test_journey_is_complete_in_fhir_audit_events(api):
    outbox_id = await _journey(api)
    bundle = await _export(api, f"?patient={FNR}")
    Bundle.model_validate(bundle)
    events = [e["resource"] for e in bundle["entry"]]
    for ev in events:
        AuditEvent.model_validate(ev)
    trail = [(ev["subtype"][0]["code"], ev["agent"][0]["who"]["identifier"]["value"]) for ev in events]
    assert trail == [("message.receive", "poc"), ("results.pull", "ehr"), ("results.taken", "ehr")]
    receive, pull, taken = events
    assert receive["action"] == "C" and pull["action"] == "R" and taken["action"] == "U"
    assert all(ev["outcome"] == "0" for ev in events)
    assert all(ev["entity"][0]["what"]["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.1",
                                                          "value": FNR} for ev in events)
    assert pull["entity"][1]["what"]["reference"] == f"Bundle/{outbox_id}"
    assert pull["agent"][0]["network"]["address"] == "127.0.0.1"


def _journey_actions(bundle: dict) -> list[str]:
    """The actions in an export, without the auditor's own reads."""
    return [e["resource"]["subtype"][0]["code"] for e in bundle["entry"]
            if e["resource"]["subtype"][0]["code"] != "audit.read"]


async def test_the_export_is_itself_audited_and_searchable_by_date_and_action(api):
    await _journey(api)
    await _export(api, f"?patient={FNR}")
    reads = await _export(api, "?action=audit.read")
    assert len(reads["entry"]) == 1
    ev = reads["entry"][0]["resource"]
    assert ev["agent"][0]["who"]["identifier"]["value"] == "auditor"
    assert ev["entity"][0]["what"]["identifier"]["value"] == FNR    # whose trail was read
    # Reading a patient's trail becomes part of that patient's trail.
    again = await _export(api, f"?patient={FNR}")
    assert [e["resource"]["subtype"][0]["code"] for e in again["entry"]][-1] == "audit.read"
    today = ev["recorded"][:10]
    full = ["message.receive", "results.pull", "results.taken"]
    assert _journey_actions(await _export(api, f"?patient={FNR}&date={today}")) == full
    assert _journey_actions(await _export(api, f"?patient={FNR}&date=lt{today}")) == []
    assert _journey_actions(await _export(api, f"?patient={FNR}&date=ge2000-01&date=le2999")) == full
    assert (await _export(api, "?patient=01010112345"))["entry"] == []


async def test_export_pages(api):
    await _journey(api)
    page = await _export(api, f"?patient={FNR}&_count=2")
    assert _journey_actions(page) == ["message.receive", "results.pull"]
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = await _export(api, nxt[nxt.index("?"):])
    assert _journey_actions(rest) == ["results.taken"]


@pytest.mark.parametrize("value", ["2025-13-01", "yesterday", "ne2025", "2025-01-01T25:00"])
def test_bad_date_search_values_are_refused(value):
    with pytest.raises(SearchError):
        date_bounds(value)


async def test_bad_search_gets_400_operation_outcome(api):
    status, body, _ = await api.call("GET", "/fhir/AuditEvent?date=soon", "auditor")
    assert status == 400 and orjson.loads(body)["resourceType"] == "OperationOutcome"


async def test_owner_cannot_update_delete_or_truncate(api):
    await _journey(api)
    conn = await asyncpg.connect(api.gw.db_url)
    try:
        for sql in ["UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log",
                    "TRUNCATE audit_log"]:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE patient = $1", FNR) == 3
    finally:
        await conn.close()


def _as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
async def app_role_url(api):
    """A login role that is a member of labgate_app, as production runs the gateway."""
    name = "gw_" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(api.gw.db_url)
    try:
        await conn.execute(f"CREATE ROLE {name} LOGIN IN ROLE labgate_app")
    finally:
        await conn.close()
    yield _as_user(api.gw.db_url, name)


async def test_gateway_role_cannot_alter_the_audit_trail(api, app_role_url):
    await _journey(api)
    conn = await asyncpg.connect(app_role_url)
    try:
        assert await conn.fetchval("SELECT current_user") != "postgres"
        # What the gateway needs still works ...
        await conn.execute("INSERT INTO audit_log (actor_kind, actor, action, outcome)"
                           " VALUES ('system', 'x', 'test', 'success')")
        assert await conn.fetchval("SELECT count(*) FROM message") == 1
        await conn.execute("UPDATE outbox SET attempts = attempts")
        # ... changing or hiding the trail does not.
        for sql in ["UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log",
                    "TRUNCATE audit_log", "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
                    "DROP TRIGGER audit_log_no_update ON audit_log", "DROP TABLE audit_log",
                    "DROP TRIGGER message_audit_received ON message"]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
    finally:
        await conn.close()


async def test_a_gateway_runs_as_the_app_role(api, app_role_url):
    """Production mode: migrations applied by the owner, the gateway connects as labgate_app."""
    from gateway.app import Gateway
    from gateway.config import parse
    from sec_helpers import security_config
    gw = Gateway(parse(security_config()), db_url=app_role_url, home_dir=None)
    await gw.start()
    try:
        ack = (await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01("APP-1")]))[0]
        assert b"MSA|AA" in ack
        async with gw.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'message.receive' AND patient = $1", FNR) == 1
    finally:
        await gw.stop()


async def test_push_delivery_and_rejected_receipt_are_audited(gateway_factory):
    from sec_helpers import security_config
    from support import MllpReceiver
    receiver = await MllpReceiver().start()
    try:
        cfg = security_config()
        cfg["destinations"].append({"name": "lis-mllp", "type": "mllp", "system": "lis", "host": "127.0.0.1",
                                    "port": receiver.port, "backoff_initial_s": 0.05, "ack_timeout_s": 2.0})
        cfg["routes"][0]["to"].append("lis-mllp")
        gw = await gateway_factory(cfg)
        port = gw.listeners["mllp-in"].port
        acks = await mllp_exchange("127.0.0.1", port, [oru_r01("PUSH-1"), b"MSH|broken"])
        assert b"MSA|AA" in acks[0] and b"MSA|AR" in acks[1]
        await receiver.wait_for(1)
        async with gw.pool.acquire() as conn:
            for _ in range(100):
                rows = await conn.fetch("SELECT action, actor_kind, actor, patient, outcome, detail FROM audit_log"
                                        " ORDER BY id")
                if any(r["action"] == "results.deliver" for r in rows):
                    break
                await asyncio.sleep(0.05)
    finally:
        await receiver.stop()
    got = [(r["action"], r["actor"], r["patient"], r["outcome"]) for r in rows]
    assert ("message.receive", "poc", FNR, "success") in got
    assert ("message.receive", "poc", None, "error") in got          # the unparseable one
    assert ("results.deliver", "labgate", FNR, "success") in got
    deliver = next(r for r in rows if r["action"] == "results.deliver")
    assert deliver["actor_kind"] == "gateway" and deliver["detail"] == "to lis-mllp"
