"""The console in a real headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright): log in, read the overview against the database, find a
rejected message and replay it after a table fix, acknowledge a critical
result. Screenshots of every page at 1280 and 390 px go to
test-output/console/. Every request the pages make must stay on the gateway
(no external network), and no Content-Security-Policy violation may occur."""
from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from playwright.async_api import expect
from console_support import ADMIN_PW, glucose, set_crp_high, set_plausible_high

from support import oru_r01

CHROMIUM = os.environ.get("LABGATE_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDEST = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))
  .concat([...document.querySelectorAll('main *')].filter(e => e.scrollWidth > window.innerWidth && getComputedStyle(e).overflowX === 'visible').slice(0, 6).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + e.scrollWidth))"""
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}

# A developer without root may lack the browser; in CI (where scripts/test
# installs it) a missing browser is a failure, never a quiet skip.
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason=f"{CHROMIUM} missing (scripts/test installs Debian's chromium)")


@pytest.fixture
async def browser(console, tmp_path):
    """A fresh Chromium profile; yields a page that records every request and CSP error."""
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        ctx = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900})
        page = ctx.pages[0] if ctx.pages else await ctx.new_page()
        page.set_default_timeout(15_000)
        page.requests, page.problems = [], []
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("console", lambda m: page.problems.append(m.text)
                if m.type == "error" and "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        yield page
        await ctx.close()
    foreign = [u for u in page.requests if not u.startswith(console.base) and not u.startswith("data:")]
    assert foreign == [], f"requests left the gateway: {foreign}"
    assert page.problems == [], page.problems


async def login(page, console):
    await page.goto(console.base + "/console/")
    await page.fill("#login-form input[name=name]", "ada")
    await page.fill("#login-form input[name=password]", ADMIN_PW)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#overview table, #overview .tiles")


async def shoot(page, name: str) -> None:
    """Screenshots at both widths; the phone layout must not scroll sideways."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, (w, h) in WIDTHS.items():
        await page.set_viewport_size({"width": w, "height": h})
        await page.wait_for_timeout(100)
        await page.screenshot(path=str(SHOTS / f"{name}-{w}.png"), full_page=True)
        overflow = await page.evaluate("document.documentElement.scrollWidth")
        if overflow > w + 1:
            wide = await page.evaluate(WIDEST)
            raise AssertionError(f"{name} at {w}px is {overflow}px wide: {wide}")
    await page.set_viewport_size({"width": 1280, "height": 900})


async def _db_numbers(console) -> dict:
    conn = await console.db()
    try:
        out = {}
        for r in await conn.fetch("SELECT destination, state, count(*) AS n FROM outbox GROUP BY 1, 2"):
            out[(r["destination"], r["state"])] = r["n"]
        for r in await conn.fetch("SELECT source, status, count(*) AS n FROM message GROUP BY 1, 2"):
            out[(r["source"], r["status"])] = r["n"]
        return out
    finally:
        await conn.close()


async def cell(page, row_selector: str, field: str) -> str:
    return (await page.text_content(f"{row_selector} [data-field={field}]")).strip()


async def test_overview_shows_what_the_database_holds_and_updates_live(console, browser):
    page = browser
    console.receiver.ack_code = "AA"
    await console.send(oru_r01("OV-1"), oru_r01("OV-2"), oru_r01("OV-BAD", fnr="12345678901"))
    await console.receiver.wait_for(2)
    await asyncio.sleep(0.3)   # the delivery transaction commits just after the receiver's ACK
    db = await _db_numbers(console)
    await login(page, console)
    assert await cell(page, "tr[data-dest=ehr-pull]", "held") == str(db[("ehr-pull", "held")]) == "2"
    assert await cell(page, "tr[data-dest=lis-mllp]", "delivered") == str(db[("lis-mllp", "delivered")]) == "2"
    assert await cell(page, "tr[data-dest=lis-mllp]", "pending") == "0"
    assert await cell(page, "tr[data-source=poc]", "accepted") == str(db[("poc", "accepted")])
    assert await cell(page, "tr[data-source=poc]", "rejected") == str(db[("poc", "rejected")]) == "1"
    assert await page.locator("tr[data-dest=lis-mllp] svg.chart rect").count() >= 1
    await shoot(page, "overview")
    # live: a new message shows up without reloading (server-sent events)
    await console.send(oru_r01("OV-3"))
    await expect(page.locator("tr[data-dest=ehr-pull] [data-field=held]")).to_have_text("3", timeout=15_000)
    assert page.url.endswith("#/overview")


async def test_find_rejected_message_and_replay_after_table_fix(console, browser):
    page = browser
    set_crp_high(console.tables, "10")        # the table is wrong: CRP 27 mg/L looks implausible
    admin = await console.client("ada", ADMIN_PW)
    assert (await admin.post("/api/admin/tables/reload", {"reason": "test setup"})).status == 200
    [ack] = await console.send(oru_r01("REJ-42"))
    assert b"MSA|AE" in ack
    await login(page, console)
    await page.click("nav a[data-page=messages]")
    await page.fill("#message-filters input[name=control_id]", "REJ-42")
    await page.click("#message-filters button[type=submit]")
    row = page.locator("#messages tr[data-control-id='REJ-42']")
    await row.wait_for()
    assert "VALUE-IMPLAUSIBLE" in await row.locator(".rule-codes").text_content()
    await shoot(page, "messages")
    await row.locator("a").click()
    await page.wait_for_selector("#verdict")
    codes = await page.locator("#verdict .rule-code").all_text_contents()
    assert "VALUE-IMPLAUSIBLE" in codes
    assert await page.locator("#raw .seg").count() == 5            # one line per segment
    assert await page.get_attribute("#raw .seg:nth-child(2) .f >> nth=2", "title") == "PID-3"
    await shoot(page, "message-rejected")
    # the bioengineer fixes the table; the validator reloads it; the admin replays
    set_crp_high(console.tables, "500")
    assert (await admin.post("/api/admin/tables/reload", {"reason": "CRP limit fixed"})).status == 200
    await page.fill("#action-reason", "CRP plausibility limit fixed")
    await page.click("#replay")
    await page.wait_for_selector("#action-result .msg")
    assert "accepted" in await page.text_content("#action-result")
    await console.receiver.wait_for(1)
    for _ in range(50):
        await page.reload()
        await page.wait_for_selector("#outbox")
        states = await page.locator("#outbox tr[data-outbox] .outbox-state").all_text_contents()
        if "delivered" in states:
            break
        await asyncio.sleep(0.2)
    assert "delivered" in states
    assert "accepted" in await page.text_content("#message-facts")
    assert await page.locator("#attempts tbody tr").count() == 1
    await shoot(page, "message-replayed")


@pytest.mark.console_instruments
async def test_replay_button_replays_a_rejected_instrument_message(console, browser):
    from adapters.poct1a.simulator import run_simulation
    page = browser
    set_plausible_high(console.tables, "NPU27300", "40")     # HbA1c 48 mmol/mol looks implausible
    admin = await console.client("ada", ADMIN_PW)
    assert (await admin.post("/api/admin/tables/reload", {"reason": "test setup"})).status == 200
    t = await asyncio.wait_for(run_simulation("127.0.0.1", console.gw.listeners["poct-in"].port,
                                              scenario="hba1c", qc_first=True), 30)
    assert [e.split(":")[0] for e in t["gateway_errors"]] == ["VALUE-IMPLAUSIBLE"], t
    listed = await (await admin.get("/api/admin/messages?source=poc-poct&status=rejected")).json()
    [mid] = [m["id"] for m in listed["messages"]]
    set_plausible_high(console.tables, "NPU27300", "200")
    assert (await admin.post("/api/admin/tables/reload", {"reason": "HbA1c limit fixed"})).status == 200
    await login(page, console)
    await page.goto(console.base + f"/console/#/message/{mid}")
    await page.wait_for_selector("#verdict")
    assert "VALUE-IMPLAUSIBLE" in await page.locator("#verdict .rule-code").all_text_contents()
    await page.wait_for_selector("#raw pre.xml")
    await expect(page.locator("#replay")).to_be_enabled()
    await page.fill("#action-reason", "HbA1c plausibility limit fixed")
    await page.click("#replay")
    await page.wait_for_selector("#action-result .msg")
    assert "replay: accepted" in await page.text_content("#action-result")
    facts = await page.text_content("#message-facts")
    assert "accepted" in facts and "POCT1A-OBS" in facts and "poct1a" in facts
    assert await page.locator("#outbox tr[data-outbox] .outbox-state").all_text_contents() == ["held"]
    await shoot(page, "message-instrument-replayed")


async def test_acknowledge_a_critical_result(console, browser):
    page = browser
    await console.send(glucose("CRIT-7"))
    await login(page, console)
    assert await page.locator("#critical-open tbody tr").count() == 1
    await page.click("nav a[data-page=critical]")
    row = page.locator("#critical tr[data-id]")
    await row.wait_for()
    assert "35" in await row.text_content()
    await shoot(page, "critical")
    await row.locator("input[name=phoned_to]").fill("Dr. Berg, legevakten")
    await row.locator("input[name=phoned_at]").fill("2026-11-23T07:05")
    await row.locator("button.ack").click()
    await page.wait_for_selector("text=No critical result is waiting")
    conn = await console.db()
    try:
        ack = await conn.fetchrow("SELECT acknowledged_by, phoned_to FROM critical_ack")
    finally:
        await conn.close()
    assert (ack["acknowledged_by"], ack["phoned_to"]) == ("ada", "Dr. Berg, legevakten")
    await page.goto(console.base + "/console/#/critical?all=1")
    await page.wait_for_selector("#critical")
    assert re.search(r"Phoned to Dr\. Berg, legevakten", await page.text_content("#critical"))
    await shoot(page, "critical-acknowledged")


async def test_instruments_page_and_login_page_render(console, browser):
    page = browser
    await page.goto(console.base + "/console/")
    await page.wait_for_selector("#login-form")
    await shoot(page, "login")
    await page.fill("#login-form input[name=name]", "ada")
    await page.fill("#login-form input[name=password]", "wrong password here")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#login-form .msg.error")
    await login(page, console)
    await page.click("nav a[data-page=instruments]")
    await page.wait_for_selector("#instruments")
    await shoot(page, "instruments")


ASTM = ("1H|\\^&|||ACME-CRP^1.0|||||||P|1394-97\r2P|1||13116900216\r3O|1|LID1||^^^CRP\r"
        "4R|1|^^^CRP|27|mg/L||H||F\r5L|1|N\r")
POCT = ('<?xml version="1.0"?><OBS.R01><HDR><HDR.control_id V="7"/></HDR>'
        '<SVC><PT><OBS><OBS.observation_id V="CRP"/><OBS.value V="27" U="mg/L"/></OBS></PT></SVC></OBS.R01>')
HOSTILE = ("MSH|^~\\&|<script>alert(1)</script>|X|Y|Z|20250101||ORU^R01|H1|P|2.5.1\r"
           "PID|1||<img src=x onerror=alert(2)>\r")


async def _store_raw(console, protocol: str, control_id: str, raw: str) -> int:
    conn = await console.db()
    try:
        return await conn.fetchval(
            "INSERT INTO message (source, protocol, message_type, control_id, content_sha256, raw,"
            " status, verdict) VALUES ('poc', $1, 'ORU^R01', $2, sha256($3), $3, 'rejected',"
            " '[{\"severity\": \"error\", \"code\": \"TEST-RULE\", \"location\": \"x\", \"text\": \"<b>t</b>\"}]')"
            " RETURNING id", protocol, control_id, raw.encode())
    finally:
        await conn.close()


async def test_raw_astm_xml_and_hostile_content_render_as_text(console, browser):
    page = browser
    astm = await _store_raw(console, "astm", "A1", ASTM)
    poct = await _store_raw(console, "poct1a", "P1", POCT)
    bad = await _store_raw(console, "mllp", "H1", HOSTILE)
    await login(page, console)
    await page.goto(console.base + f"/console/#/message/{astm}")
    await page.wait_for_selector("#raw .astm")
    assert await page.locator("#raw .astm .seg").count() == 5
    assert await page.get_attribute("#raw .astm .seg:nth-child(4) .f >> nth=2", "title") == "R-4"
    await shoot(page, "message-astm")
    await page.goto(console.base + f"/console/#/message/{poct}")
    await page.wait_for_selector("#raw pre.xml")
    xml = await page.text_content("#raw pre.xml")
    assert '\n        <OBS.observation_id V="CRP"/>' in xml
    await shoot(page, "message-poct1a")
    await page.goto(console.base + f"/console/#/message/{bad}")
    await page.wait_for_selector("#raw .hl7")
    assert "<script>alert(1)</script>" in await page.text_content("#raw")
    assert await page.locator("#raw script, #raw img, #verdict b").count() == 0
    assert "<b>t</b>" in await page.text_content("#verdict")
    await shoot(page, "message-hostile")


@pytest.mark.console_instruments
async def test_instrument_locked_by_qc_shows_on_overview_instruments_page_and_alerts(console, browser):
    from adapters.poct1a.simulator import run_simulation
    from gateway.console import jobs
    page = browser
    # a failing CRP control (41 mg/L, target 22-34) locks CRP on the simulator's instrument
    t = await asyncio.wait_for(run_simulation("127.0.0.1", console.gw.listeners["poct-in"].port,
                                              scenario="crp", qc_first=True), 30)
    assert any(e.startswith("QC-LOCKOUT") for e in t["gateway_errors"])
    ada = await console.client("ada", ADMIN_PW)
    listing = await (await ada.get("/api/admin/instruments")).json()
    [inst] = listing["instruments"]
    states = {a["analysis"]: a["state"] for a in inst["analyses"]}
    assert states["NPU19748"] == "locked" and inst["site"] == "Sykehjem A"
    assert [q["result"] for q in inst["qc_recent"]] == ["fail"]
    assert [o["operator_id"] for o in inst["operators"]] == ["OP017"]
    found = await jobs.conditions(console.gw)
    assert found["instrument-locked:000987"]["analyses"] == ["NPU19748"]
    await login(page, console)
    assert "NPU19748" in await page.text_content("#overview")
    await page.click("nav a[data-page=instruments]")
    row = page.locator("#instrument-list tr[data-instrument='000987']")
    await row.wait_for()
    assert await row.locator("[data-analysis=NPU19748] .qc-state").text_content() == "locked"
    assert "Kari Hansen" in await row.text_content()
    await shoot(page, "instruments-locked")
