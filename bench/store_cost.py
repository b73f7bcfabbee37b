"""What one group commit costs, by part, on an otherwise idle database.

    python -m bench.store_cost [--batch 32] [--rounds 40]

Starts a gateway in this process (embedded PostgreSQL in a temporary
directory, the benchmark configuration, nothing sending), evaluates
benchmark ORU^R01 messages with its pipeline and stores batches of
``--batch`` through its MessageWriter's group commit, timing each commit.
Variants change one thing each, so the difference to "as stored" is what
that part costs:

- ``bundle stubbed``: the ~9 KB canonical bundle replaced by a tiny one
  (what the bundle's bytes cost: jsonb input, TOAST chunks, WAL);
- ``no outbox rows``, ``no history rows``: those follow-up rows left out;
- ``bundle as json``, ``bundle pglz``: the column's type or compression
  changed for the run (the triggers that read the bundle are dropped for
  the json variant, as they would have to be).

Under load the same commit takes 2–3× longer (bench.run's 32 senders: the
writers wait for the event loop and share the two cores); this shows what
PostgreSQL itself spends.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.messages import oru_r01  # noqa: E402

_STUB = '{"resourceType":"Bundle","type":"transaction","entry":[]}'

VARIANTS = {
    "as stored": ([], lambda r: r),
    "bundle stubbed": ([], lambda r: dataclasses.replace(r, bundle_json=_STUB)),
    "no outbox rows": ([], lambda r: dataclasses.replace(r, destinations=[])),
    "no history rows": ([], lambda r: dataclasses.replace(
        r, history=dataclasses.replace(r.history, results=[], orders=[]))),
    "bundle as json": (["DROP TRIGGER message_console_keys ON message",
                        "ALTER TABLE message DISABLE TRIGGER message_audit_received",
                        "ALTER TABLE message ALTER COLUMN bundle TYPE json",
                        "ALTER TABLE message ALTER COLUMN bundle SET STORAGE EXTERNAL"], lambda r: r),
    "bundle pglz": (["ALTER TABLE message ALTER COLUMN bundle SET STORAGE EXTENDED",
                     "ALTER TABLE message ALTER COLUMN bundle SET COMPRESSION pglz"], lambda r: r),
}


async def _measure(db_url: str, setup: list[str], change, batch: int, rounds: int) -> list[float]:
    from gateway.app import Gateway
    from gateway.config import parse
    cfg = tomllib.loads(harness.gateway_toml(harness.free_port(), harness.free_port(),
                                             harness.free_port()))
    # the same two outbox rows per message, but nobody delivering them
    cfg["destinations"] = [{"name": d["name"], "type": "pull", "system": d["system"]}
                           for d in cfg["destinations"]]
    gw = Gateway(parse(cfg), db_url=db_url)
    await gw.start()
    try:
        for sql in setup:
            await gw.pool.execute(sql)
        times = []
        for k in range(rounds):
            records = [change(gw.pipeline.evaluate(oru_r01(f"C{k}-{i}", i), "poc"))
                       for i in range(batch)]
            t0 = time.perf_counter()
            await gw._writer._write_batch(records)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        await gw.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args(argv)
    from gateway import logging as log_setup
    log_setup.configure("warning")
    work = Path(tempfile.mkdtemp(prefix="labgate-store-cost-"))
    pg = harness.Postgres(work / "pg")
    pg.start()
    try:
        print(f"group commit of {args.batch} accepted ORU^R01, {args.rounds} rounds, idle database")
        for n, (name, (setup, change)) in enumerate(VARIANTS.items()):
            db_url = asyncio.run(pg.create_database(f"cost_{n}"))
            times = asyncio.run(_measure(db_url, setup, change, args.batch, args.rounds))
            med = statistics.median(times)
            print(f"  {name:<18} median {med:6.2f} ms per commit, {med / args.batch:.3f} ms per message")
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
