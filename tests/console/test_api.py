"""The /api/admin JSON API against a real gateway: who may call it, CSRF,
lockout, and what every endpoint does to the database."""
from __future__ import annotations

import asyncio

import pytest
from console_support import ADMIN_PW, AUDITOR_PW, glucose, set_crp_high

from support import oru_r01

# (method, path) of every admin endpoint; {id} is filled with a real message id.
ENDPOINTS = [
    ("GET", "/api/admin/session"),
    ("GET", "/api/admin/overview"),
    ("GET", "/api/admin/messages"),
    ("GET", "/api/admin/messages/{id}"),
    ("POST", "/api/admin/messages/{id}/replay"),
    ("POST", "/api/admin/messages/{id}/retry"),
    ("POST", "/api/admin/messages/{id}/discard"),
    ("POST", "/api/admin/messages/replay"),
    ("POST", "/api/admin/tables/reload"),
    ("GET", "/api/admin/instruments"),
    ("GET", "/api/admin/critical"),
    ("POST", "/api/admin/critical/{id}/ack"),
]
BODY = {"reason": "test", "filter": {"status": "rejected"}, "phoned_to": "Dr. Hansen"}


async def _any_message(console) -> int:
    await console.send(oru_r01("ANY-1"))
    conn = await console.db()
    try:
        return await conn.fetchval("SELECT id FROM message ORDER BY id LIMIT 1")
    finally:
        await conn.close()


async def _call(client, method, path, csrf=True):
    if method == "GET":
        return await client.get(path)
    return await client.post(path, BODY, csrf=csrf)


async def test_every_endpoint_needs_a_session(console):
    mid = await _any_message(console)
    anon = await console.client()
    for method, path in ENDPOINTS:
        resp = await _call(anon, method, path.format(id=mid))
        assert resp.status == 401, (method, path, resp.status)


async def test_every_endpoint_refuses_a_non_admin(console):
    mid = await _any_message(console)
    otto = await console.client("otto", AUDITOR_PW)
    for method, path in ENDPOINTS:
        resp = await _call(otto, method, path.format(id=mid))
        assert resp.status == 403, (method, path, resp.status)
        assert (await resp.json())["error"] == "forbidden"


async def test_every_endpoint_serves_an_admin(console):
    mid = await _any_message(console)
    ada = await console.client("ada", ADMIN_PW)
    for method, path in ENDPOINTS:
        resp = await _call(ada, method, path.format(id=mid))
        # 409: the action does not apply to this accepted message; never 401/403.
        assert resp.status in (200, 409), (method, path, resp.status, await resp.text())


async def test_state_changes_without_csrf_token_are_refused(console):
    mid = await _any_message(console)
    ada = await console.client("ada", ADMIN_PW)
    for method, path in ENDPOINTS:
        if method != "POST":
            continue
        for token in (False, "not-the-token"):
            resp = await _call(ada, method, path.format(id=mid), csrf=token)
            assert resp.status == 403, (path, token, resp.status)
            assert (await resp.json())["error"] == "csrf"
    conn = await console.db()
    try:
        assert await conn.fetchval("SELECT count(*) FROM message WHERE discarded_at IS NOT NULL") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE actor = 'ada' AND action <> 'console.login'") == 0
    finally:
        await conn.close()


async def test_logout_needs_csrf_and_ends_the_session(console):
    ada = await console.client("ada", ADMIN_PW)
    assert (await ada.post("/console/logout", csrf=False)).status == 403
    assert (await ada.get("/api/admin/session")).status == 200
    assert (await ada.post("/console/logout")).status == 200
    assert (await ada.get("/api/admin/session")).status == 401


async def test_session_cookie_flags(console):
    ada = await console.client("ada", ADMIN_PW)
    flags = ada.set_cookie_header.lower()
    assert "httponly" in flags and "secure" in flags and "samesite=strict" in flags
    conn = await console.db()
    try:
        # only the hash of the cookie value is stored
        stored = await conn.fetch("SELECT token_sha256 FROM console_session")
        assert stored and all(ada.cookie.encode() not in bytes(r["token_sha256"]) for r in stored)
    finally:
        await conn.close()


async def test_lockout_after_repeated_failures(console):
    c = await console.client()
    for _ in range(3):   # lockout_attempts = 3 in the fixture
        assert (await c.login("ada", "wrong password!!")).status == 401
    resp = await c.login("ada", ADMIN_PW)
    assert resp.status == 401, "a locked account refuses even the right password"
    conn = await console.db()
    try:
        assert await conn.fetchval("SELECT locked_until > now() FROM console_user WHERE name = 'ada'")
        denied = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'console.login' AND outcome = 'denied'")
        assert denied == 4
        await conn.execute("UPDATE console_user SET locked_until = now() - interval '1 second'"
                           " WHERE name = 'ada'")
    finally:
        await conn.close()
    assert (await c.login("ada", ADMIN_PW)).status == 200, "unlocked once the lockout has passed"


async def test_no_default_account_or_password(console, gateway_factory):
    conn = await console.db()
    try:
        names = {r["name"] for r in await conn.fetch("SELECT name FROM console_user")}
    finally:
        await conn.close()
    assert names == {"ada", "otto"}, "only the accounts the test made exist"
    c = await console.client()
    for name, pw in [("admin", "admin"), ("admin", "password"), ("labgate", "labgate"), ("root", "")]:
        assert (await c.login(name, pw)).status == 401


async def test_weak_passwords_and_unknown_roles_are_refused(console):
    from gateway import users
    with pytest.raises(users.UserError):
        await console.add_user("short", "tooshort", ["admin"])
    with pytest.raises(users.UserError):
        await console.add_user("bad-role", "long enough password", ["superuser"])


async def test_security_headers_on_console_responses(console):
    ada = await console.client("ada", ADMIN_PW)
    for path in ("/console/", "/console/static/app.js", "/api/admin/overview"):
        resp = await ada.get(path)
        assert resp.status == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    anon = await console.client()
    for path in ("/api/admin/overview", "/console/static/missing.js"):
        resp = await anon.get(path)
        assert resp.status in (401, 404)
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"
    events = await ada.get("/api/admin/events")
    assert events.headers["Content-Security-Policy"] == csp and events.headers["Cache-Control"] == "no-store"
    events.close()
    page = await (await ada.get("/console/")).text()
    assert "<script>" not in page and "http://" not in page and "https://" not in page


async def test_overview_numbers_match_the_database(console):
    console.receiver.ack_code = "AA"
    await console.send(oru_r01("OV-1"), oru_r01("OV-2"), oru_r01("OV-3", fnr="12345678901"))
    await console.receiver.wait_for(2)
    ada = await console.client("ada", ADMIN_PW)
    for _ in range(50):
        data = await (await ada.get("/api/admin/overview")).json()
        lis = next(d for d in data["destinations"] if d["name"] == "lis-mllp")
        if lis["delivered_last_hour"] == 2:
            break
        await asyncio.sleep(0.1)
    assert lis["delivered_last_hour"] == 2 and sum(lis["delivered_per_minute"]) == 2
    ehr = next(d for d in data["destinations"] if d["name"] == "ehr-pull")
    assert ehr["held"] == 2 and ehr["oldest_waiting_s"] is not None
    poc = next(s for s in data["sources"] if s["source"] == "poc")
    assert (poc["accepted"], poc["rejected"]) == (2, 1)
    assert data["listeners"][0]["name"] == "mllp-in"
    assert data["instruments"] == []            # this gateway has no instrument locked


async def test_search_filters_and_keyset_pages(console):
    await console.send(*[oru_r01(f"PG-{i}") for i in range(7)], oru_r01("BAD-1", fnr="12345678901"))
    ada = await console.client("ada", ADMIN_PW)
    seen, after = [], None
    while True:
        q = "/api/admin/messages?source=poc&status=accepted&limit=3" + (f"&after={after}" if after else "")
        body = await (await ada.get(q)).json()
        seen += [m["control_id"] for m in body["messages"]]
        after = body["next_after"]
        if after is None:
            break
    assert seen == [f"PG-{i}" for i in reversed(range(7))]
    body = await (await ada.get("/api/admin/messages?control_id=BAD-1")).json()
    assert [m["status"] for m in body["messages"]] == ["rejected"]
    assert "PID-FNR-CHECKSUM" in body["messages"][0]["rule_codes"]
    body = await (await ada.get("/api/admin/messages?specimen=LID0004711&order=ORD-1&limit=100")).json()
    assert len(body["messages"]) == 8     # the rejected one has a bundle and search keys too
    bad = await ada.get("/api/admin/messages?status=bogus")
    assert bad.status == 400


async def test_patient_search_is_audited(console):
    await console.send(oru_r01("PAT-1"), oru_r01("PAT-2", fnr="01010012356"))
    ada = await console.client("ada", ADMIN_PW)
    body = await (await ada.get("/api/admin/messages?patient=13116900216")).json()
    assert [m["control_id"] for m in body["messages"]] == ["PAT-1"]
    conn = await console.db()
    try:
        row = await conn.fetchrow("SELECT actor, patient FROM audit_log WHERE action = 'message.search_patient'")
    finally:
        await conn.close()
    assert (row["actor"], row["patient"]) == ("ada", "13116900216")


async def test_detail_shows_verdict_attempts_and_audits_the_read(console):
    await console.send(oru_r01("DT-1"))
    await console.receiver.wait_for(1)
    ada = await console.client("ada", ADMIN_PW)
    mid = (await (await ada.get("/api/admin/messages?control_id=DT-1")).json())["messages"][0]["id"]
    for _ in range(50):
        d = await (await ada.get(f"/api/admin/messages/{mid}")).json()
        if d["attempts"]:
            break
        await asyncio.sleep(0.1)
    assert d["raw"].startswith("MSH|") and d["bundle"]["resourceType"] == "Bundle"
    assert {o["destination"] for o in d["outbox"]} == {"lis-mllp", "ehr-pull"}
    assert d["attempts"][0]["outcome"] == "delivered"
    conn = await console.db()
    try:
        n = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'message.read'"
                                " AND resource_id = $1 AND patient = '13116900216'", str(mid))
    finally:
        await conn.close()
    assert n >= 1


async def test_replay_after_table_fix_is_accepted_and_delivered(console):
    set_crp_high(console.tables, "10")          # a table error: CRP 27 looks implausible
    ada = await console.client("ada", ADMIN_PW)
    assert (await ada.post("/api/admin/tables/reload", {"reason": "bad limit"})).status == 200
    [ack] = await console.send(oru_r01("RP-1"))
    assert b"MSA|AE" in ack
    mid = (await (await ada.get("/api/admin/messages?control_id=RP-1")).json())["messages"][0]["id"]
    # replay before the fix: still rejected, verdict names the rule
    r = await (await ada.post(f"/api/admin/messages/{mid}/replay", {"reason": "try"})).json()
    assert (r["result"], r["detail"]) == ("rejected", "VALUE-IMPLAUSIBLE")
    set_crp_high(console.tables, "500")
    assert (await ada.post("/api/admin/tables/reload", {"reason": "limit fixed"})).status == 200
    r = await (await ada.post(f"/api/admin/messages/{mid}/replay", {"reason": "table fixed"})).json()
    assert r["result"] == "accepted"
    await console.receiver.wait_for(1)
    assert console.receiver.control_ids() == [f"LG{await _outbox_id(console, mid, 'lis-mllp')}"]
    conn = await console.db()
    try:
        m = await conn.fetchrow("SELECT status, replays FROM message WHERE id = $1", mid)
        actions = [r["detail"] for r in await conn.fetch(
            "SELECT detail FROM audit_log WHERE action = 'message.replay' AND actor = 'ada' ORDER BY id")]
    finally:
        await conn.close()
    assert (m["status"], m["replays"]) == ("accepted", 2)
    assert actions == ["reason: try; result: rejected", "reason: table fixed; result: accepted"]
    # the sender's retransmission of the same bytes is still a duplicate, not a second message
    [ack2] = await console.send(oru_r01("RP-1"))
    assert b"MSA|AA" in ack2


async def _outbox_id(console, mid, dest) -> int:
    conn = await console.db()
    try:
        return await conn.fetchval("SELECT id FROM outbox WHERE message_id = $1 AND destination = $2",
                                   mid, dest)
    finally:
        await conn.close()


async def _wait_state(console, mid, dest, state, timeout=15.0):
    conn = await console.db()
    try:
        for _ in range(int(timeout / 0.1)):
            got = await conn.fetchval("SELECT state FROM outbox WHERE message_id = $1 AND destination = $2",
                                      mid, dest)
            if got == state:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"outbox row stayed {got}, wanted {state}")
    finally:
        await conn.close()


async def test_dead_letter_replay_delivers(console):
    console.receiver.ack_code = "AR"
    await console.send(oru_r01("DL-1"))
    ada = await console.client("ada", ADMIN_PW)
    mid = (await (await ada.get("/api/admin/messages?control_id=DL-1")).json())["messages"][0]["id"]
    await _wait_state(console, mid, "lis-mllp", "dead")
    listed = await (await ada.get("/api/admin/messages?status=dead")).json()
    assert [m["id"] for m in listed["messages"]] == [mid]
    console.receiver.ack_code = "AA"
    r = await (await ada.post(f"/api/admin/messages/{mid}/replay", {"reason": "receiver fixed"})).json()
    assert (r["result"], r["detail"]) == ("requeued", "lis-mllp")
    await _wait_state(console, mid, "lis-mllp", "delivered")


async def test_retry_now_and_discard(console):
    console.receiver.ack_code = None        # never answers: the row keeps backing off
    await console.send(oru_r01("RD-1"))
    ada = await console.client("ada", ADMIN_PW)
    mid = (await (await ada.get("/api/admin/messages?control_id=RD-1")).json())["messages"][0]["id"]
    resp = await ada.post(f"/api/admin/messages/{mid}/retry", {"reason": "receiver back"})
    assert resp.status in (200, 409)     # 409 only if the row was already dead
    resp = await ada.post(f"/api/admin/messages/{mid}/discard", {})
    assert resp.status == 400, "a reason is required"
    resp = await ada.post(f"/api/admin/messages/{mid}/discard", {"reason": "sent by phone instead"})
    assert resp.status == 200
    conn = await console.db()
    try:
        states = {r["destination"]: r["state"] for r in await conn.fetch(
            "SELECT destination, state FROM outbox WHERE message_id = $1", mid)}
        m = await conn.fetchrow("SELECT discarded_at, discard_reason FROM message WHERE id = $1", mid)
        audit = await conn.fetchval("SELECT detail FROM audit_log WHERE action = 'message.discard'")
    finally:
        await conn.close()
    assert states["ehr-pull"] == "discarded" and states["lis-mllp"] in ("discarded", "delivered")
    assert m["discard_reason"] == "sent by phone instead" and m["discarded_at"] is not None
    assert audit == "reason: sent by phone instead"


async def test_bulk_replay_of_a_filtered_set(console):
    set_crp_high(console.tables, "10")
    ada = await console.client("ada", ADMIN_PW)
    await ada.post("/api/admin/tables/reload", {"reason": "bad limit"})
    await console.send(*[oru_r01(f"BK-{i}") for i in range(4)], oru_r01("BK-X", fnr="12345678901"))
    set_crp_high(console.tables, "500")
    await ada.post("/api/admin/tables/reload", {"reason": "fixed"})
    r = await (await ada.post("/api/admin/messages/replay",
                              {"reason": "table fixed", "filter": {"status": "rejected", "source": "poc"}})).json()
    assert r["count"] == 5 and r["summary"] == {"accepted": 4, "rejected": 1}
    await console.receiver.wait_for(4)
    assert (await ada.post("/api/admin/messages/replay", {"reason": "x", "filter": {}})).status == 400


async def test_acknowledge_critical_result(console):
    await console.send(glucose("CR-1"), oru_r01("CR-N"))
    ada = await console.client("ada", ADMIN_PW)
    crit = (await (await ada.get("/api/admin/critical")).json())["critical"]
    assert [c["control_id"] for c in crit] == ["CR-1"]
    assert crit[0]["observations"][0]["value"] == 35 and "patient" not in crit[0]
    mid = crit[0]["id"]
    assert (await ada.post(f"/api/admin/critical/{mid}/ack", {})).status == 400
    resp = await ada.post(f"/api/admin/critical/{mid}/ack",
                          {"phoned_to": "Dr. Lege, legevakt", "phoned_at": "2026-01-02T10:15:00+01:00"})
    assert resp.status == 200
    again = await ada.post(f"/api/admin/critical/{mid}/ack", {"phoned_to": "someone"})
    assert again.status == 409
    assert (await (await ada.get("/api/admin/critical")).json())["critical"] == []
    conn = await console.db()
    try:
        ack = await conn.fetchrow("SELECT * FROM critical_ack WHERE message_id = $1", mid)
        audit = await conn.fetchrow("SELECT actor, patient FROM audit_log WHERE action = 'critical.acknowledge'")
    finally:
        await conn.close()
    assert (ack["acknowledged_by"], ack["phoned_to"]) == ("ada", "Dr. Lege, legevakt")
    assert ack["phoned_at"].isoformat() == "2026-01-02T09:15:00+00:00"
    assert (audit["actor"], audit["patient"]) == ("ada", "13116900216")


async def test_events_stream_sends_the_overview(console):
    ada = await console.client("ada", ADMIN_PW)
    resp = await ada.get("/api/admin/events")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert await asyncio.wait_for(resp.content.readline(), 10) == b": connected\n"
    assert await asyncio.wait_for(resp.content.readline(), 10) == b"\n"
    line = await asyncio.wait_for(resp.content.readline(), 10)
    assert line == b"event: overview\n"
    data = await asyncio.wait_for(resp.content.readline(), 10)
    assert data.startswith(b"data: {") and b'"destinations"' in data
    resp.close()


async def test_admin_system_with_bearer_token_needs_no_csrf(console):
    """A system with the admin role (automation) uses its token; CSRF is a cookie matter."""
    from gateway import tokens
    ada = await console.client("ada", ADMIN_PW)
    conn = await console.db()
    try:
        _, token = await tokens.create(conn, "poc")   # poc has role instrument only
    finally:
        await conn.close()
    resp = await ada.http.get(console.base + "/api/admin/overview",
                              headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 403


async def test_hostile_requests_are_answered_cleanly(console):
    mid = await _any_message(console)
    ada = await console.client("ada", ADMIN_PW)
    h = {"Cookie": f"labgate_session={ada.cookie}", "X-CSRF-Token": ada.csrf}
    url = console.base + f"/api/admin/messages/{mid}/discard"
    for data, ctype, status in [(b"{not json", "application/json", 400),
                                (b"[1, 2]", "application/json", 400),
                                (b"reason=x", "application/x-www-form-urlencoded", 415),
                                (b'{"reason": "' + b"x" * 600 + b'"}', "application/json", 400),
                                (b'{"reason": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400)]:
        resp = await ada.http.post(url, data=data, headers={**h, "Content-Type": ctype})
        assert resp.status == status, (data[:20], resp.status)
        if data.startswith(b'{"reason": ['):
            assert (await resp.json())["error"] == "JSON-TOO-DEEP"
    assert (await ada.get("/api/admin/messages/abc")).status == 404
    assert (await ada.get("/api/admin/messages/999999999")).status == 404
    assert (await ada.get("/api/admin/messages?after=x")).status == 400
    assert (await ada.get("/api/admin/messages?since=yesterday")).status == 400
    # a form-encoded login (what a cross-site form could send) is refused
    resp = await ada.http.post(console.base + "/console/login", data={"name": "ada", "password": ADMIN_PW})
    assert resp.status == 415
    # a forged or overlong cookie is no session
    for cookie in ("x" * 4000, "forged", ""):
        resp = await ada.http.get(console.base + "/api/admin/session",
                                  headers={"Cookie": f"labgate_session={cookie}"})
        assert resp.status == 401
    conn = await console.db()
    try:
        assert await conn.fetchval("SELECT discarded_at FROM message WHERE id = $1", mid) is None
    finally:
        await conn.close()
