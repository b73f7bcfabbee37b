"""Fill a database with N stored messages (default 1,000,000) and time the console.

    python -m bench.fill_messages [--count 1000000] [--db-url URL] [--keep DIR]

Rows are made inside PostgreSQL with generate_series (no round trips): a
small but real-shaped canonical bundle per message, its raw bytes, a verdict,
one outbox row per push destination and one held row for the pull
destination, delivery attempts for the last hour, spread over 30 days, with
4 % rejected, 1 % unrouted, some dead letters and a little backlog. Then a
real gateway starts on that database and the script times, through HTTP with
a logged-in console session, the overview API, the first message page, and
the searches the console offers; with /usr/bin/chromium present also the
overview page load in a real browser (login to numbers on screen).
Without --db-url an embedded PostgreSQL is started in a temporary directory.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PASSWORD = "bench password for the console"

_FILL = """
INSERT INTO message (id, received_at, source, protocol, peer, message_type, control_id,
                     content_sha256, raw, bundle, verdict, status, ack,
                     patient, order_number, specimen_number, critical)
OVERRIDING SYSTEM VALUE
SELECT g,
       now() - make_interval(secs => ($2 - g) * (30 * 86400.0 / $2)),
       CASE WHEN g % 3 = 0 THEN 'poc' ELSE 'lab' END,
       'mllp', '10.0.0.' || (g % 200), 'ORU^R01', 'C' || g,
       sha256(('m' || g)::bytea),
       convert_to('MSH|^~\\&|POCDM|LEGEVAKT|LABGW|KOMMUNE|20250314093200||ORU^R01^ORU_R01|C' || g
                  || '|P|2.5.1' || chr(13) || 'PID|1||' || lpad((g % 900000)::text, 11, '1')
                  || chr(13) || 'OBX|1|NM|NPU19748^CRP^NLK||' || (g % 300) || '|mg/L' || chr(13), 'UTF8'),
       jsonb_build_object('resourceType', 'Bundle', 'type', 'transaction', 'entry', jsonb_build_array(
           jsonb_build_object('resource', jsonb_build_object('resourceType', 'Patient',
               'identifier', jsonb_build_array(jsonb_build_object('system', 'urn:oid:2.16.578.1.12.4.1.4.1',
                                                                  'value', lpad((g % 900000)::text, 11, '1'))))),
           jsonb_build_object('resource', jsonb_build_object('resourceType', 'ServiceRequest',
               'identifier', jsonb_build_array(jsonb_build_object('value', 'ORD-' || g)))),
           jsonb_build_object('resource', jsonb_build_object('resourceType', 'Specimen',
               'identifier', jsonb_build_array(jsonb_build_object('value', 'LID' || g)))),
           jsonb_build_object('resource', jsonb_build_object('resourceType', 'Observation',
               'code', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('code', 'NPU19748'))),
               'valueQuantity', jsonb_build_object('value', g % 300, 'unit', 'mg/L'))))),
       CASE WHEN g % 25 = 0 THEN '[{"severity": "error", "code": "VALUE-IMPLAUSIBLE", "location": "Observation", "text": "implausible"}]'::jsonb
            ELSE '[]'::jsonb END,
       CASE WHEN g % 25 = 0 THEN 'rejected' WHEN g % 100 = 1 THEN 'unrouted' ELSE 'accepted' END,
       convert_to('MSH|^~\\&|LABGATE||POCDM||20250314093200||ACK|A' || g || '|P|2.5.1' || chr(13)
                  || 'MSA|AA|C' || g || chr(13), 'UTF8'),
       lpad((g % 900000)::text, 11, '1'), 'ORD-' || g, 'LID' || g, g % 5000 = 7
FROM generate_series($1::bigint, $1 + $3 - 1) AS g
"""

_OUTBOX = """
INSERT INTO outbox (message_id, destination, state, attempts, next_attempt_at, created_at, done_at, last_error)
SELECT m.id, d.name,
       CASE WHEN d.name = 'ehr-pull' THEN (CASE WHEN m.id > $2 - 300 THEN 'held' ELSE 'taken' END)
            WHEN m.id % 20000 = 3 THEN 'dead'
            WHEN m.id > $2 - 50 THEN 'pending' ELSE 'delivered' END,
       1, now() + interval '1 day', m.received_at, m.received_at + interval '1 second',
       CASE WHEN m.id % 20000 = 3 THEN 'AE: receiver says no' END
FROM message m CROSS JOIN (VALUES ('lis-mllp'), ('ehr-pull')) AS d(name)
WHERE m.status = 'accepted' AND m.id BETWEEN $1 AND $2
"""

_ATTEMPTS = """
INSERT INTO delivery_attempt (outbox_id, attempted_at, outcome, detail, duration_ms)
SELECT o.id, o.done_at, CASE WHEN o.state = 'dead' THEN 'dead' ELSE 'delivered' END, 'AA', 3
FROM outbox o WHERE o.destination = 'lis-mllp' AND o.state IN ('delivered', 'dead')
  AND o.message_id BETWEEN $1 AND $2
"""


async def fill(url: str, count: int, chunk: int = 100_000) -> float:
    """Insert ``count`` messages with their outbox rows and attempts; returns seconds."""
    from gateway import migrate
    conn = await asyncpg.connect(url)
    t0 = time.perf_counter()
    try:
        await migrate.apply(conn)
        await conn.execute("SET session_replication_role = replica")  # keys are computed here
        start = (await conn.fetchval("SELECT coalesce(max(id), 0) FROM message")) + 1
        for lo in range(start, start + count, chunk):
            n = min(chunk, start + count - lo)
            async with conn.transaction():
                await conn.execute(_FILL, lo, start + count, n)
                await conn.execute(_OUTBOX, lo, start + count - 1)
                await conn.execute(_ATTEMPTS, lo, lo + n - 1)
            print(f"  {lo + n - start:>9,} messages", flush=True)
        await conn.execute("SELECT setval(pg_get_serial_sequence('message', 'id'), max(id)) FROM message")
        await conn.execute("SET session_replication_role = DEFAULT")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - t0


def bench_config() -> dict:
    return {
        "gateway": {"name": "LABGATE"}, "http": {"host": "127.0.0.1", "port": 0},
        "systems": [{"name": "poc", "roles": ["instrument"]}, {"name": "lab", "roles": ["instrument"]},
                    {"name": "ehr", "roles": ["ehr"]}, {"name": "lis", "roles": ["lis"]}],
        "listeners": [{"name": "mllp-in", "protocol": "mllp", "host": "127.0.0.1", "port": 0, "system": "poc"}],
        "destinations": [
            {"name": "lis-mllp", "type": "mllp", "system": "lis", "host": "127.0.0.1", "port": 9,
             "ack_timeout_s": 1.0},
            {"name": "ehr-pull", "type": "pull", "system": "ehr"}],
        "routes": [{"name": "results", "sources": ["poc", "lab"], "to": ["lis-mllp", "ehr-pull"]}],
        "alerts": {"interval_s": 3600},
    }


async def timed(http: aiohttp.ClientSession, url: str, headers: dict, n: int) -> dict:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200, (url, resp.status, await resp.text())
            await resp.read()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


async def measure(url: str, home: Path, runs: int) -> dict:
    from gateway import users
    from gateway.app import Gateway
    from gateway.config import parse
    gw = Gateway(parse(bench_config()), db_url=url, home_dir=home)
    await gw.start()
    try:
        conn = await asyncpg.connect(url)
        try:
            if not await conn.fetchval("SELECT 1 FROM console_user WHERE name = 'bench'"):
                await users.create_user(conn, "bench", PASSWORD, ["admin"])
            total = await conn.fetchval("SELECT count(*) FROM message")
            mid = await conn.fetchval("SELECT max(id) FROM message") // 2
        finally:
            await conn.close()
        base = f"http://127.0.0.1:{gw.http_port}"
        out = {"messages": total}
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/console/login", json={"name": "bench", "password": PASSWORD}) as r:
                cookie = {"Cookie": f"labgate_session={r.cookies['labgate_session'].value}"}
            paths = {
                "overview_api": "/api/admin/overview",
                "messages_first_page": "/api/admin/messages?limit=50",
                "messages_rejected_page": "/api/admin/messages?status=rejected&limit=50",
                "messages_by_control_id": f"/api/admin/messages?control_id=C{mid + 1}",
                "messages_by_patient": "/api/admin/messages?patient=11111123456",
                "messages_by_specimen": f"/api/admin/messages?specimen=LID{mid - 1}",
                "messages_dead": "/api/admin/messages?status=dead",
                "messages_deep_page": f"/api/admin/messages?after={mid}&source=lab&limit=50",
                "message_detail": f"/api/admin/messages/{mid}",
                "critical_list": "/api/admin/critical",
            }
            for name, path in paths.items():
                out[name] = await timed(http, base + path, cookie, runs)
        out["overview_page_browser"] = await browser_load(base, runs)
        return out
    finally:
        await gw.stop()


async def browser_load(base: str, runs: int) -> dict | str:
    """Login once, then time navigations to the overview until its numbers are on screen."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return "skipped: /usr/bin/chromium missing"
    from playwright.async_api import async_playwright
    with tempfile.TemporaryDirectory() as profile:
        async with async_playwright() as pw:
            ctx = await pw.chromium.launch_persistent_context(
                profile, executable_path=str(chromium), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            await page.goto(base + "/console/")
            await page.fill("#login-form input[name=name]", "bench")
            await page.fill("#login-form input[name=password]", PASSWORD)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector("tr[data-dest=lis-mllp] [data-field=dead]")
            times = []
            for _ in range(runs):
                await page.goto("about:blank")
                t0 = time.perf_counter()
                await page.goto(base + "/console/#/overview")
                await page.wait_for_selector("tr[data-dest=lis-mllp] [data-field=dead]")
                times.append((time.perf_counter() - t0) * 1000)
            await ctx.close()
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


async def main_async(args) -> None:
    tmp = None
    url = args.db_url
    emb = None
    if not url:
        from gateway.embedded_pg import EmbeddedPostgres
        base = Path(args.keep) if args.keep else Path(tmp := tempfile.mkdtemp(prefix="labgate-fill-"))
        emb = EmbeddedPostgres(base / "pgdata")
        url = await asyncio.to_thread(emb.start)
    try:
        conn = await asyncpg.connect(url)
        have = await conn.fetchval("SELECT to_regclass('message') IS NOT NULL")
        n = await conn.fetchval("SELECT count(*) FROM message") if have else 0
        await conn.close()
        if n < args.count:
            print(f"filling {args.count - n:,} messages …", flush=True)
            secs = await fill(url, args.count - n)
            print(f"filled in {secs:.1f} s", flush=True)
        results = await measure(url, Path(tmp or args.keep or "."), args.runs)
        for k, v in results.items():
            print(f"{k:<26} {v}")
    finally:
        if emb:
            await asyncio.to_thread(emb.stop)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--db-url", help="PostgreSQL URL (default: embedded, in a temp dir)")
    p.add_argument("--keep", help="directory for the embedded database (kept for reruns)")
    p.add_argument("--runs", type=int, default=10)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
