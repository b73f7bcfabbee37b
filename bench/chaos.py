"""Chaos scenarios: break things under load and count what survived.

    python -m bench.chaos [--n 2000]

Each scenario runs real ``labgate serve`` processes on an embedded
PostgreSQL, MLLP senders that retry until they get a positive ACK (as a
well-behaved sender does), and an MLLP destination that records every
delivery. It returns the counts:

- acked: distinct control ids the senders got AA for;
- stored: distinct accepted messages in the database;
- delivered: distinct messages the destination received (mapped back from
  the outbound control id ``LG<outbox id>``);
- repeats: deliveries of an outbox row the destination had already received
  (allowed by at-least-once delivery only when a gateway dies between the
  destination's ACK and its own commit; the receiver recognises them by the
  stable control id);
- out_of_order: messages delivered after a message that the sender sent only
  once the first was acknowledged (must be 0 for an ordered destination).
  Messages in flight at the same time on different connections have no
  order to keep: their outbox ids come from a sequence, not the commit order.

tests/chaos/ runs the same scenarios with small N and asserts the invariants.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench import harness  # noqa: E402
from bench.loadgen import closed_loop  # noqa: E402

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


class Destination:
    """An MLLP receiver that records the outbound control ids in arrival order."""

    def __init__(self) -> None:
        self.control_ids: list[str] = []
        self.arrival: dict[str, float] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self, port: int) -> "Destination":
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _conn(self, reader, writer) -> None:
        try:
            while True:
                data = await reader.readuntil(FS + CR)
                msh = data[data.index(VT) + 1:].split(b"\r", 1)[0].decode().split("|")
                ctrl = msh[9]
                self.control_ids.append(ctrl)
                self.arrival.setdefault(ctrl, time.monotonic())
                writer.write(VT + f"MSH|^~\\&|LIS||LABGATE||20250101000000||ACK^R01^ACK|A{ctrl}|P|2.5.1\r"
                             f"MSA|AA|{ctrl}\r".encode() + FS + CR)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()


@dataclass
class Counts:
    scenario: str
    n: int
    acked: int = 0
    stored: int = 0
    delivered: int = 0
    repeats: int = 0
    out_of_order: int = 0
    lost: int = 0                    # acked but not delivered
    sender_retries: int = 0          # sends without a positive ACK that were retried
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)

    def ok(self) -> bool:
        return (self.acked == self.stored == self.delivered == self.n and self.lost == 0
                and self.out_of_order == 0)


class Gateways:
    """N ``labgate serve`` processes on one database, same destination.
    ``roles``: one per process (``serve --role``; default all of them
    ``all``); ``ports`` are the MLLP ports of those that have a listener."""

    def __init__(self, db_url: str, work: Path, dest_port: int, count: int = 1,
                 roles: tuple[str, ...] | None = None, **toml) -> None:
        self.db_url, self.work = db_url, work
        self.roles = roles or ("all",) * count
        self.configs, self.ready_ports, self.ports = [], [], []
        for i, role in enumerate(self.roles):
            cfg = work / f"gw{i}.toml"
            port, http = harness.free_port(), harness.free_port()
            cfg.write_text(harness.gateway_toml(port, http, dest_port, pull=False, **toml))
            self.configs.append(cfg)
            self.ready_ports.append(http if role == "delivery" else port)
            if role != "delivery":
                self.ports.append(port)
        self.procs: list = [None] * len(self.roles)

    def start(self, i: int | None = None) -> None:
        which = [i] if i is not None else range(len(self.roles))
        for k in which:
            self.procs[k] = harness.start_gateway(self.configs[k], self.db_url, self.work / f"gw{k}.log",
                                                  extra=("--role", self.roles[k]))
        for k in which:
            harness.wait_for_port(self.ready_ports[k], proc=self.procs[k])

    def kill(self, i: int = 0) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def stop(self) -> list[int | None]:
        return [harness.stop(p) for p in self.procs if p is not None]

    def log_tail(self, i: int = 0) -> str:
        return (self.work / f"gw{i}.log").read_text(errors="replace")[-3000:]


async def _count(db_url: str, counts: Counts, dest: Destination, acked_ids: set[str],
                 timeline: dict[str, tuple[float, float]]) -> Counts:
    conn = await asyncpg.connect(db_url)
    try:
        stored = {r["control_id"] for r in await conn.fetch(
            "SELECT control_id FROM message WHERE source = 'poc' AND status = 'accepted' "
            "AND duplicate_of IS NULL")}
        by_outbox = {f"LG{r['id']}": r["control_id"] for r in await conn.fetch(
            "SELECT o.id, m.control_id FROM outbox o JOIN message m ON m.id = o.message_id "
            "WHERE o.destination = 'lis-mllp'")}
    finally:
        await conn.close()
    seen: set[str] = set()
    order: list[str] = []            # original control ids, first deliveries in arrival order
    for ctrl in dest.control_ids:
        if ctrl in seen:
            counts.repeats += 1
            continue
        seen.add(ctrl)
        if ctrl in by_outbox:
            order.append(by_outbox[ctrl])
    counts.out_of_order = order_violations(order, timeline)
    delivered = set(order)
    counts.acked, counts.stored, counts.delivered = len(acked_ids), len(stored), len(delivered)
    counts.lost = len(acked_ids - delivered)
    return counts


def order_violations(order: list[str], timeline: dict[str, tuple[float, float]]) -> int:
    """Messages Y delivered before some X that was acknowledged before Y was
    first sent (X happened-before Y, so X must be delivered first)."""
    violations = 0
    earliest_ack_after = float("inf")
    for ctrl in reversed(order):
        first_sent, acked = timeline.get(ctrl, (float("-inf"), float("inf")))
        if earliest_ack_after < first_sent:
            violations += 1
        earliest_ack_after = min(earliest_ack_after, acked)
    return violations


async def _wait_delivered(dest: Destination, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(set(dest.control_ids)) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)          # anything delivered twice would show up now


async def _send(ports: list[int], n: int, prefix: str, timeline: dict, conns: int = 4):
    """Retrying senders spread over the gateways' ports; returns (acked ids,
    retries) and adds each message's (first send, ACK) times to ``timeline``."""
    share = [n // len(ports) + (1 if i < n % len(ports) else 0) for i in range(len(ports))]
    results = await asyncio.gather(*(
        closed_loop("127.0.0.1", port, conns, k, f"{prefix}{i}-", keep_ids=True, retry=True, timeout=10)
        for i, (port, k) in enumerate(zip(ports, share))))
    acked = set().union(*(r.acked_ids for r in results))
    retries = sum(r.failed + r.negative for r in results)
    for r in results:
        timeline.update(r.timeline)
    return acked, retries


async def _until_stored(db_url: str, k: int, timeout: float = 60) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM message") < k:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {k} messages stored")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def _idle_probes(ports: list[int], dest: Destination, timeline: dict, acked: set[str],
                       k: int) -> list[float]:
    """Send ``k`` single messages into an idle system (1.2 s apart, round
    robin over the gateways); ms from send to delivery for each. With only
    the 1 s poll these spread over 0-1000 ms; NOTIFY makes them tens of ms."""
    lat = []
    for i in range(k):
        await asyncio.sleep(1.2)                # every worker idle, waiting
        before = len(set(dest.control_ids))
        sent = time.monotonic()
        got, _ = await _send([ports[i % len(ports)]], 1, f"I{i}-", timeline, conns=1)
        acked |= got
        while len(set(dest.control_ids)) == before and time.monotonic() - sent < 10:
            await asyncio.sleep(0.005)
        lat.append(round((time.monotonic() - sent) * 1000, 1))
    return lat


async def sigkill_midload(db_url: str, work: Path, n: int = 400, timeout: float = 120) -> Counts:
    """SIGKILL the gateway when a third of the load is stored; restart it;
    the senders retry what was not acknowledged."""
    return await _kill_midload(db_url, work, n, timeout, Counts("SIGKILL gateway mid-load, restart", n),
                               roles=("all",), victim=0, prefix="K")


async def sigkill_delivery_midload(db_url: str, work: Path, n: int = 400,
                                   timeout: float = 120) -> Counts:
    """Intake and delivery as two processes (``serve --role``): SIGKILL the
    delivery process when a third of the load is stored, restart it; intake
    goes on acknowledging meanwhile."""
    counts = Counts("intake + delivery processes, SIGKILL delivery mid-load, restart", n)
    return await _kill_midload(db_url, work, n, timeout, counts,
                               roles=("intake", "delivery"), victim=1, prefix="KD")


async def _kill_midload(db_url: str, work: Path, n: int, timeout: float, counts: Counts, *,
                        roles: tuple[str, ...], victim: int, prefix: str) -> Counts:
    """Gateways in ``roles`` under a load of ``n``; SIGKILL process ``victim``
    when a third is stored, restart it, count."""
    dest_port = harness.free_port()
    dest = await Destination().start(dest_port)
    gws = Gateways(db_url, work, dest_port, roles=roles, batch=20)
    t0 = time.monotonic()
    timeline: dict[str, tuple[float, float]] = {}
    try:
        await asyncio.to_thread(gws.start)
        sending = asyncio.create_task(_send(gws.ports, n, prefix, timeline))
        await _until_stored(db_url, n // 3)
        gws.kill(victim)
        counts.notes["killed_after_stored"] = n // 3
        counts.notes["delivered_before_kill"] = len(set(dest.control_ids))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(gws.start, victim)
        acked, counts.sender_retries = await asyncio.wait_for(sending, timeout)
        await _wait_delivered(dest, len(acked), timeout)
    finally:
        counts.notes["exit_codes"] = gws.stop()
        await dest.stop()
    counts.seconds = round(time.monotonic() - t0, 2)
    return await _count(db_url, counts, dest, acked, timeline)


async def pg_restart_midload(pg: harness.Postgres, db_url: str, work: Path, n: int = 400,
                             timeout: float = 120, idle_probes: int = 0) -> Counts:
    """``pg_ctl restart -m fast`` while senders are sending: every connection
    drops and in-flight transactions roll back; senders get no ACK and retry.
    With ``idle_probes``, then time how soon single messages are delivered
    (does NOTIFY still wake the worker after the restart?)."""
    counts = Counts("PostgreSQL restart mid-load", n + idle_probes)
    dest_port = harness.free_port()
    dest = await Destination().start(dest_port)
    gws = Gateways(db_url, work, dest_port, batch=20)
    t0 = time.monotonic()
    timeline: dict[str, tuple[float, float]] = {}
    try:
        await asyncio.to_thread(gws.start)
        sending = asyncio.create_task(_send(gws.ports, n, "P", timeline))
        await _until_stored(db_url, n // 3)
        r0 = time.monotonic()
        await asyncio.to_thread(pg.restart)
        counts.notes["restart_s"] = round(time.monotonic() - r0, 2)
        acked, counts.sender_retries = await asyncio.wait_for(sending, timeout)
        await _wait_delivered(dest, len(acked), timeout)
        if idle_probes:
            lat = await _idle_probes(gws.ports, dest, timeline, acked, idle_probes)
            counts.notes["idle_wakeup_after_restart_ms"] = lat
            await asyncio.sleep(1.0)
        counts.notes["gateway_alive_after"] = gws.procs[0].poll() is None
    finally:
        counts.notes["exit_codes"] = gws.stop()
        await dest.stop()
    counts.seconds = round(time.monotonic() - t0, 2)
    return await _count(db_url, counts, dest, acked, timeline)


async def destination_down(db_url: str, work: Path, n: int = 400, down_s: float = 3.0,
                           timeout: float = 120) -> Counts:
    """The destination is down while the load arrives and for ``down_s``
    more; once it is back the backlog drains, in order."""
    counts = Counts(f"destination down {down_s:g} s under load, then back", n)
    dest_port = harness.free_port()
    dest = Destination()
    gws = Gateways(db_url, work, dest_port, batch=50, backoff_max_s=0.5)
    t0 = time.monotonic()
    timeline: dict[str, tuple[float, float]] = {}
    try:
        await asyncio.to_thread(gws.start)
        acked, counts.sender_retries = await _send(gws.ports, n, "D", timeline)
        await asyncio.sleep(down_s)
        back = time.monotonic()
        await dest.start(dest_port)
        await _wait_delivered(dest, len(acked), timeout)
        counts.notes["drain_s"] = round(max(dest.arrival.values(), default=back) - back, 2)
    finally:
        counts.notes["exit_codes"] = gws.stop()
        await dest.stop()
    counts.seconds = round(time.monotonic() - t0, 2)
    return await _count(db_url, counts, dest, acked, timeline)


async def two_gateways(db_url: str, work: Path, n: int = 400, idle_probes: int = 5,
                       timeout: float = 120) -> Counts:
    """Two gateways on one database, load on both listeners, one ordered
    destination; then single messages into an idle system to see that
    NOTIFY (not the 1 s poll) wakes a delivery worker."""
    counts = Counts("two gateways, one PostgreSQL, ordered destination", n + idle_probes)
    dest_port = harness.free_port()
    dest = await Destination().start(dest_port)
    gws = Gateways(db_url, work, dest_port, count=2, batch=20)
    t0 = time.monotonic()
    timeline: dict[str, tuple[float, float]] = {}
    try:
        await asyncio.to_thread(gws.start)
        acked, counts.sender_retries = await _send(gws.ports, n, "H", timeline)
        await _wait_delivered(dest, len(acked), timeout)
        lat = await _idle_probes(gws.ports, dest, timeline, acked, idle_probes)
        counts.notes["idle_wakeup_ms"] = lat
        counts.notes["idle_wakeup_median_ms"] = statistics.median(lat) if lat else None
        await asyncio.sleep(1.0)
    finally:
        counts.notes["exit_codes"] = gws.stop()
        await dest.stop()
    counts.seconds = round(time.monotonic() - t0, 2)
    return await _count(db_url, counts, dest, acked, timeline)


async def run_all(n: int) -> list[Counts]:
    work = Path(tempfile.mkdtemp(prefix="labgate-chaos-"))
    pg = harness.Postgres(work / "pgdata")
    pg.start()
    out = []
    try:
        for name, scenario in (("kill", sigkill_midload), ("killdelivery", sigkill_delivery_midload),
                               ("pgrestart", None), ("down", destination_down), ("two", two_gateways)):
            db_url = await pg.create_database(f"chaos_{name}")
            sub = work / name
            sub.mkdir()
            if scenario is None:
                c = await pg_restart_midload(pg, db_url, sub, n, idle_probes=5)
            else:
                c = await scenario(db_url, sub, n)
            print(json.dumps(asdict(c)), flush=True)
            out.append(c)
    finally:
        pg.stop()
    return out


def table(rows: list[Counts]) -> str:
    out = ["| scenario | N | acked | stored | delivered | lost | repeats | out of order | sender retries | s | notes |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in rows:
        notes = ", ".join(f"{k}={v}" for k, v in c.notes.items())
        out.append(f"| {c.scenario} | {c.n} | {c.acked} | {c.stored} | {c.delivered} | {c.lost} | {c.repeats} "
                   f"| {c.out_of_order} | {c.sender_retries} | {c.seconds} | {notes} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="labgate chaos scenarios with counts")
    ap.add_argument("--n", type=int, default=2000, help="messages per scenario")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.md")
    ap.add_argument("--update-docs", action="store_true", help="put the table into docs/performance.md")
    args = ap.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = asyncio.run(run_all(args.n))
    text = f"N = {args.n} per scenario; load average at start {load}.\n\n" + table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    if args.update_docs:
        from bench.report import update_doc
        update_doc(ROOT / "docs" / "performance.md", text, block="chaos")
    return 0 if all(c.ok() for c in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
