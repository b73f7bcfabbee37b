"""labgate's benchmark: one command, one run, everything side by side.

    python -m bench.run                 # full run (a few minutes)
    python -m bench.run --quick         # fewer messages, to check the tooling
    python -m bench.run --profile       # also profile the gateway under 32 senders (py-spy)
    python -m bench.run --prefill 1000000   # 32 senders, 1M stored vs empty, 3 rounds
    python -m bench.run --profile --update-docs   # what the release numbers come from

It starts its own embedded PostgreSQL in a temporary directory, a fast MLLP
sink (the destination) in its own process, and the real ``labgate serve`` as
a subprocess with an MLLP listener routed to the sink and to a pull
destination. Load generators run in their own processes. It measures:

(a) the gateway end to end (MLLP ORU^R01 in → parse → map → validate →
    durable group commit → ACK; delivery to the sink drains concurrently)
    with 1 and 32 senders, and at a fixed offered 500 msg/s; and 32 senders
    again with the gateway as two processes, ``--role intake`` and
    ``--role delivery``;
(b) the floors: a bare asyncio MLLP server answering a fixed ACK, and raw
    asyncpg durable inserts of the same rows (one per transaction, from 1 and
    32 connections, and in batches of 100);
(c) the peer: Medplum's Hl7Server (parse + ACK only, bench/medplum);
(d) the FHIR REST path (orders POSTed by 16 clients) when the gateway has
    POST /fhir/ServiceRequest, else a note saying it was skipped.

Writes bench/results/results.{json,md,png}; docs/performance.md quotes the md.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import psutil  # noqa: E402

from bench import floors, harness, loadgen  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from bench.report import SPLIT_ROW  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MEDPLUM = ROOT / "bench" / "medplum"


def summarize(name: str, res: loadgen.LoadResult, *, conns: int, extra: dict | None = None) -> dict:
    row = {
        "name": name, "conns": conns, "messages": res.sent, "acked": res.acked,
        "negative": res.negative, "failed": res.failed, "seconds": round(res.seconds, 3),
        "msg_per_s": round(res.acked / res.seconds, 1) if res.seconds else 0.0,
        "p50_ms": round(percentile(res.latencies_ms, 50), 2),
        "p95_ms": round(percentile(res.latencies_ms, 95), 2),
        "p99_ms": round(percentile(res.latencies_ms, 99), 2),
    }
    row.update(extra or {})
    print(f"  {name:<44} {row['msg_per_s']:>9.1f} msg/s  p50 {row['p50_ms']:.2f}  "
          f"p95 {row['p95_ms']:.2f}  p99 {row['p99_ms']:.2f} ms  "
          f"(acked {res.acked}/{res.sent}, neg {res.negative}, failed {res.failed})"
          + "".join(f"  {k}={v}" for k, v in (extra or {}).items()), flush=True)
    return row


class GatewayUnderTest:
    """The real gateway, its sink and its database, with CPU accounting.
    ``split``: two processes, ``--role intake`` and ``--role delivery``
    (CPU and peak RSS are then the two processes' sums; the event loop's
    cores are the intake's)."""

    def __init__(self, pg: harness.Postgres, db_url: str, work: Path, profile_to: Path | None = None,
                 *, split: bool = False):
        self.pg, self.db_url, self.work = pg, db_url, work
        self.mllp_port, self.http_port, sink_port = (harness.free_port() for _ in range(3))
        self.sink = harness.start_helper(sys.executable, "-m", "bench.servers", "sink", str(sink_port))
        cfg = work / "bench.toml"
        cfg.write_text(harness.gateway_toml(self.mllp_port, self.http_port, sink_port))
        self.procs = [harness.start_gateway(cfg, db_url, work / "gateway.log", profile_to=profile_to,
                                            extra=("--role", "intake") if split else ())]
        self.proc = self.procs[0]
        waits = [(self.mllp_port, self.proc), (self.http_port, self.proc)]
        if split:
            port = harness.free_port()
            self.procs.append(harness.start_gateway(cfg, db_url, work / "delivery.log", extra=(
                "--role", "delivery", "--http-port", str(port))))
            waits.append((port, self.procs[1]))
        try:
            for port, proc in waits:
                harness.wait_for_port(port, proc=proc)
        except (RuntimeError, TimeoutError) as e:
            self.stop()
            raise RuntimeError(f"{e}\n{(work / 'gateway.log').read_text()[-3000:]}") from None
        self.gws = [harness.gateway_process(p) for p in self.procs]
        self.gw = self.gws[0]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of (the gateway process(es), its PostgreSQL)."""
        return harness.cpu_seconds(self.gws), harness.cpu_seconds([self.pg.postmaster()])

    def measure(self, name: str, kind: str, conns: int, **load) -> dict:
        """One load phase; CPU counts until delivery to the sink has drained."""
        gw0, pg0 = self.cpu()
        loop0, busy0, t0 = harness.main_thread_cpu(self.gw), harness.machine_busy(), time.perf_counter()
        res = loadgen.run_in_process(kind, host="127.0.0.1", port=self.mllp_port, conns=conns, **load)
        secs = time.perf_counter() - t0
        loop1, busy1 = harness.main_thread_cpu(self.gw), harness.machine_busy()
        drain = asyncio.run(harness.wait_drained(self.db_url))
        gw1, pg1 = self.cpu()
        per = 1000 / max(res.acked, 1)
        return summarize(name, res, conns=conns, extra={
            "cpu_s_per_1000": round((gw1 - gw0 + pg1 - pg0) * per, 3),
            "cpu_gateway": round((gw1 - gw0) * per, 3),
            "cpu_postgres": round((pg1 - pg0) * per, 3),
            "drain_after_s": round(drain, 2),
            # acknowledged and delivered to the sink: from the first send
            # until the outbox has drained
            "delivered_per_s": round(res.acked / (res.seconds + drain), 1),
            "peak_rss_mb": round(sum(harness.peak_rss_mb(g) for g in self.gws), 1),
            # during the load (not the drain): how much of a core the event
            # loop got, and how much of the machine was busy at all
            "loop_cores": round((loop1 - loop0) / secs, 2),
            "machine_cores": round((busy1 - busy0) / secs, 2),
        })

    def stop(self) -> None:
        if self.gw.pid != self.proc.pid:   # under py-spy: stop the gateway, py-spy then writes
            self.gw.terminate()
            try:
                self.proc.wait(60)
            except Exception:
                pass
        for proc in self.procs:
            harness.stop(proc)
        harness.stop(self.sink)


async def fhir_orders(http_port: int, db_url: str, clients: int, n: int) -> dict:
    """POST ServiceRequests from ``clients`` concurrent clients, or say why not."""
    import aiohttp

    from gateway import tokens
    conn = await asyncpg.connect(db_url)
    try:
        _, token = await tokens.create(conn, "ehr", label="bench")
    finally:
        await conn.close()
    base = f"http://127.0.0.1:{http_port}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    from bench.fhir_orders import service_request
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(f"{base}/fhir/ServiceRequest", data=json.dumps(service_request(0))) as r:
            if r.status in (404, 405):
                return {"skipped": f"POST /fhir/ServiceRequest answered {r.status}: the FHIR API is not there yet"}
            if r.status >= 300:
                return {"skipped": f"POST /fhir/ServiceRequest answered {r.status}: {(await r.text())[:200]}"}
        lat: list[float] = []
        statuses: dict[int, int] = {}
        it = iter(range(1, n + 1))

        async def client():
            for i in it:
                t0 = time.perf_counter()
                async with s.post(f"{base}/fhir/ServiceRequest", data=json.dumps(service_request(i))) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                lat.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        secs = time.perf_counter() - t0
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {"name": f"gateway FHIR POST ServiceRequest, {clients} clients", "conns": clients,
            "messages": n, "acked": ok, "seconds": round(secs, 3), "msg_per_s": round(ok / secs, 1),
            "p50_ms": round(percentile(lat, 50), 2), "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2), "statuses": statuses}


def run_peer(label: str, argv: list[str], port: int, n1: int, n32: int) -> list[dict]:
    """A server without storage (floor or peer), with 1 and 32 connections."""
    proc = harness.start_helper(*argv)
    server = psutil.Process(proc.pid)
    try:
        rows = []
        for conns, n in ((1, n1), (32, n32)):
            cpu0 = harness.cpu_seconds([server])
            res = loadgen.run_in_process("closed", host="127.0.0.1", port=port, conns=conns, n=n,
                                         prefix=f"P{conns}-")
            cpu = harness.cpu_seconds([server]) - cpu0
            rows.append(summarize(f"{label}, {conns} conn", res, conns=conns, extra={
                "cpu_s_per_1000": round(cpu / max(res.acked, 1) * 1000, 3),
                "peak_rss_mb": round(harness.peak_rss_mb(server), 1)}))
        return rows
    finally:
        harness.stop(proc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, to check the tooling")
    ap.add_argument("--profile", action="store_true", help="profile the gateway (py-spy) under 32 senders")
    ap.add_argument("--prefill", type=int, default=0, help="then store this many messages and rerun 32 senders")
    ap.add_argument("--parts", default="gateway,floors,peer",
                    help="comma list of gateway, floors, peer (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--update-docs", action="store_true",
                    help="put the table into docs/performance.md (between the bench markers)")
    args = ap.parse_args(argv)
    if args.profile and not harness.PY_SPY.exists():
        ap.error(f"--profile needs {harness.PY_SPY}: pip install -e '.[bench]'")
    if importlib.util.find_spec("matplotlib") is None:   # found out at the end, it lost a run
        ap.error("the report's plot needs matplotlib: pip install -e '.[bench]'")
    parts = set(args.parts.split(","))
    scale = 0.15 if args.quick else 1.0
    args.out.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="labgate-bench-"))
    pg = harness.Postgres(work / "pgdata")
    pg.start()
    rows: list[dict] = []
    notes: list[str] = []
    mach = harness.machine()
    print(f"machine: {mach}", flush=True)
    try:
        if "gateway" in parts:
            rows += gateway_part(pg, work, args, scale, notes)
        if args.profile:
            profile_part(pg, work, args, scale)
        if "floors" in parts:
            rows += floors_part(pg, scale)
        if "peer" in parts:
            rows += peer_part(scale, notes)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    mach["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    from bench.report import write_all
    write_all(args.out, rows, notes, mach, quick=args.quick)
    if args.update_docs:
        from bench.report import update_doc
        update_doc(ROOT / "docs" / "performance.md", (args.out / "results.md").read_text())
    print(f"wrote {args.out}/results.md, results.json, results.png", flush=True)
    return 0


def counts(scale: float) -> tuple[int, int]:
    """Messages for the 1-connection and the 32-connection runs."""
    return int(3000 * scale), int(20000 * scale)


def gateway_part(pg, work: Path, args, scale: float, notes: list[str]) -> list[dict]:
    n1, n32 = counts(scale)
    nrate, rate_seconds = 500, (4 if args.quick else 15)
    rows = []
    db_url = asyncio.run(pg.create_database("bench_gateway"))
    print("(a) gateway end to end", flush=True)
    gut = GatewayUnderTest(pg, db_url, work)
    try:
        gut.measure("warm-up", "closed", 8, n=int(2000 * scale), prefix="W-")
        rows.append(gut.measure("gateway MLLP end to end, 1 sender", "closed", 1, n=n1, prefix="A1-"))
        rows.append(gut.measure("gateway MLLP end to end, 32 senders", "closed", 32, n=n32, prefix="A32-"))
        rows.append(gut.measure(f"gateway MLLP at offered {nrate} msg/s (32 conns)", "open", 32,
                                rate=nrate, seconds=rate_seconds, prefix="R-"))
        fh = asyncio.run(fhir_orders(gut.http_port, db_url, 16, int(3000 * scale)))
        if "skipped" in fh:
            notes.append("FHIR REST path (16 clients): skipped — " + fh["skipped"])
            print("  " + notes[-1], flush=True)
        else:
            rows.append(fh)
            print(f"  {fh}", flush=True)
            other = {k: v for k, v in fh["statuses"].items() if not 200 <= k < 300}
            if other:
                notes.append(f"FHIR REST path: {other} of {fh['messages']} requests were not 2xx "
                             "(status: count); msg/s counts 2xx only")
        if args.prefill:
            rows += prefill_part(pg, work, gut, args.prefill, scale, notes)
    finally:
        gut.stop()
    rows.append(split_part(pg, work, scale))
    return rows


PREFILL_ROUNDS = 3


def prefill_part(pg, work: Path, gut: "GatewayUnderTest", n: int, scale: float,
                 notes: list[str]) -> list[dict]:
    """32 senders on ``gut``'s database after storing ``n`` more messages in it,
    against a fresh empty database, in interleaved rounds: the machine's
    speed drifts by more than the 10 % being looked for within minutes."""
    _, n32 = counts(scale)
    print(f"  prefilling {n:,} stored messages …", flush=True)
    t0 = time.perf_counter()
    asyncio.run(floors.prefill(gut.db_url, n))
    # Compared is a database holding the rows, not one still writing them:
    # the fill's ~11 GB reach the disk first.
    asyncio.run(_checkpoint(gut.db_url))
    os.sync()
    print(f"  prefilled, checkpointed and synced in {time.perf_counter() - t0:.0f} s", flush=True)
    full, empty = [], []
    for r in range(1, PREFILL_ROUNDS + 1):
        full.append(gut.measure(f"gateway MLLP, 32 senders, {n:,} stored, round {r}", "closed", 32,
                                n=n32, prefix=f"PF{r}-"))
        db_url = asyncio.run(pg.create_database(f"bench_empty_{r}"))
        (work / f"empty-{r}").mkdir()
        fresh = GatewayUnderTest(pg, db_url, work / f"empty-{r}")
        try:
            fresh.measure("warm-up", "closed", 8, n=int(2000 * scale), prefix="W-")
            empty.append(fresh.measure(f"gateway MLLP, 32 senders, empty database, round {r}",
                                       "closed", 32, n=n32, prefix=f"PE{r}-"))
        finally:
            fresh.stop()
    notes.append(prefill_note(n, full, empty))
    print("  " + notes[-1], flush=True)
    return full + empty


def prefill_note(n: int, full: list[dict], empty: list[dict]) -> str:
    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    parts = []
    for key, what in (("msg_per_s", "acknowledged"), ("delivered_per_s", "delivered")):
        a, b = med(empty, key), med(full, key)
        parts.append(f"{what} {a:,.1f} → {b:,.1f} msg/s ({(b - a) / a * 100:+.1f} %)")
    for key, what in (("cpu_gateway", "gateway"), ("cpu_postgres", "PostgreSQL")):
        parts.append(f"{what} CPU {med(empty, key):.2f} → {med(full, key):.2f} ms/msg")
    return (f"With {n:,} stored messages against an empty database (medians of "
            f"{len(full)} interleaved rounds, 32 senders): " + "; ".join(parts) + ".")


async def _checkpoint(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def split_part(pg, work: Path, scale: float) -> dict:
    """32 senders against ``--role intake`` with ``--role delivery`` beside it."""
    db_url = asyncio.run(pg.create_database("bench_split"))
    # Not the phases before's dirty pages: the split starts from a checkpoint.
    asyncio.run(_checkpoint(db_url))
    split_work = work / "split"
    split_work.mkdir()
    gut = GatewayUnderTest(pg, db_url, split_work, split=True)
    try:
        gut.measure("warm-up", "closed", 8, n=int(2000 * scale), prefix="W-")
        return gut.measure(SPLIT_ROW, "closed", 32, n=counts(scale)[1], prefix="S32-")
    finally:
        gut.stop()


def profile_part(pg, work: Path, args, scale: float) -> None:
    """The gateway under 32 senders, sampled by py-spy; raw stacks + summary."""
    _, n32 = counts(scale)
    print("profile: gateway under 32 senders (py-spy)", flush=True)
    db_url = asyncio.run(pg.create_database("bench_profile"))
    raw = args.out / "profile-gateway.raw.tmp"     # large; gitignored
    gp = GatewayUnderTest(pg, db_url, work, profile_to=raw)
    try:
        gp.measure("profiled: gateway, 32 senders", "closed", 32, n=n32, prefix="PR-")
    finally:
        gp.stop()
    for _ in range(100):        # py-spy writes its file after the gateway exits
        if raw.exists() and raw.stat().st_size:
            break
        time.sleep(0.1)
    from bench.profile_summary import fold, summarize_file
    (args.out / "profile-summary.md").write_text(summarize_file(raw))
    fold(raw, args.out / "profile-gateway.folded")
    print((args.out / "profile-summary.md").read_text(), flush=True)


def floors_part(pg, scale: float) -> list[dict]:
    n1, n32 = counts(scale)
    print("(b) floors", flush=True)
    echo_port = harness.free_port()
    rows = run_peer("floor: bare asyncio MLLP, fixed ACK",
                    [sys.executable, "-m", "bench.servers", "echo", str(echo_port)],
                    echo_port, n1 * 3, n32 * 2)
    floor_url = asyncio.run(pg.create_database("bench_floor"))
    for name, mode, conns, n in (
            ("floor: asyncpg insert, 1 txn each, 1 conn", "single", 1, n1),
            ("floor: asyncpg insert, 1 txn each, 32 conns", "single", 32, n32 // 2),
            ("floor: asyncpg insert, batches of 100", "batch", 1, n32)):
        r, cpu = asyncio.run(floors.inserts(floor_url, mode=mode, conns=conns, n=n,
                                            cpu=lambda: harness.cpu_seconds([pg.postmaster()])))
        rows.append(summarize(name, r, conns=conns,
                              extra={"cpu_s_per_1000": round(cpu / max(r.acked, 1) * 1000, 3),
                                     "row_bytes": floors.ROW_BYTES}))
    return rows


def peer_part(scale: float, notes: list[str]) -> list[dict]:
    n1, n32 = counts(scale)
    print("(c) peer: Medplum Hl7Server (parse + ACK only)", flush=True)
    if not (MEDPLUM / "node_modules").exists() or not shutil.which("node"):
        notes.append("Medplum peer skipped: run `npm ci` in bench/medplum (needs node)")
        print("  " + notes[-1], flush=True)
        return []
    port = harness.free_port()
    return run_peer("peer: Medplum Hl7Server parse+ACK",
                    ["node", str(MEDPLUM / "server.js"), str(port)], port, n1 * 3, n32 * 2)


if __name__ == "__main__":
    sys.exit(main())
