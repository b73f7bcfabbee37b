"""Where PostgreSQL's CPU goes on the message path: intake alone vs intake +
delivery to an MLLP sink.

Runs the real gateway in this process on a fresh embedded PostgreSQL with
two configurations (results held for pull only; held for pull AND pushed to
an MLLP sink), sends N ORU^R01 from 32 connections, waits for delivery to
drain, and prints PostgreSQL CPU seconds per 1,000 messages for each. The
difference is what delivery costs the database.

    python -m bench.pg_attribution [--n 6000]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import MllpReceiver, base_config, mllp_exchange  # noqa: E402

from bench import harness  # noqa: E402
from bench.messages import oru_r01  # noqa: E402  (the 11-segment benchmark message)

from gateway.app import Gateway  # noqa: E402
from gateway.config import parse  # noqa: E402


async def _run(pg: harness.Postgres, n: int, push: bool, home: Path) -> tuple[float, float, float]:
    db_url = await pg.create_database("pa_" + uuid.uuid4().hex[:8])
    sink = await MllpReceiver().start() if push else None
    cfg = base_config(dest_port=sink.port if sink else None, pull=True)
    cfg["destinations"] = [dict(d, max_attempts=5) for d in cfg["destinations"]]
    gw = Gateway(parse(cfg), db_url=db_url, home_dir=home)
    await gw.start()
    port = gw.listeners["mllp-in"].port
    per = n // 32
    cpu0, t0 = harness.postgres_cpu_seconds(), time.perf_counter()
    await asyncio.gather(*[mllp_exchange("127.0.0.1", port, [oru_r01(f"PA-{c}-{i}", c * per + i) for i in range(per)], timeout=60)
                           for c in range(32)])
    if sink:
        await sink.wait_for(per * 32, timeout=300)
    wall = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    cpu = harness.postgres_cpu_seconds() - cpu0
    await gw.stop()
    if sink:
        await sink.stop()
    return per * 32 / wall, cpu / (per * 32) * 1000, wall


async def main(n: int) -> None:
    home = Path(tempfile.mkdtemp())
    pg = harness.Postgres(home / "pgdata")
    pg.start()
    try:
        for push in (False, True, False, True):
            rate, cpu, wall = await _run(pg, n, push, home)
            label = "intake + pull + MLLP delivery" if push else "intake + pull (no push)"
            print(f"{label:34s} {rate:7.1f} msg/s end to end   PostgreSQL {cpu:5.2f} CPU s per 1,000")
    finally:
        pg.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000)
    asyncio.run(main(ap.parse_args().n))
