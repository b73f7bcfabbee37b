"""Where a message's ACK latency goes under 32 closed-loop senders.

    python -m bench.latency_parts [--n 15000] [--conns 32]

Runs the gateway in this process (embedded PostgreSQL in a temporary
directory, the benchmark configuration, delivery to the fast sink in its
own process), with timers around three of its steps, and drives it with
the benchmark's load generator in its own process. Reports medians over
the measured phase (after a warm-up):

- evaluate: the synchronous part of a message (parse, map, validate,
  route, ACK), µs;
- commit: one group commit as the writer sees it, ms, and messages per commit;
- write wait: a sender's wait from handing its record to the writer until
  the commit is confirmed, ms;
- loop lag: how late a 5 ms timer fires on the gateway's event loop, ms.

The timers wrap the gateway's own methods and add a few µs per message;
use ``bench.run`` for the throughput figure itself.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness, loadgen  # noqa: E402


def _timed(samples: list, fn):
    def wrapper(*a):
        t0 = time.perf_counter()
        try:
            return fn(*a)
        finally:
            samples.append(time.perf_counter() - t0)
    return wrapper


def _timed_async(samples: list, fn, sizes: list | None = None):
    async def wrapper(arg):
        t0 = time.perf_counter()
        try:
            return await fn(arg)
        finally:
            samples.append(time.perf_counter() - t0)
            if sizes is not None:
                sizes.append(len(arg))
    return wrapper


async def _lag(samples: list) -> None:
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(0.005)
        samples.append(time.perf_counter() - t0 - 0.005)


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def _p90_ms(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)] * 1000 if values else float("nan")


async def _run(db_url: str, sink_port: int, n: int, conns: int) -> None:
    from gateway.app import Gateway
    from gateway.config import parse
    mllp, http = harness.free_port(), harness.free_port()
    gw = Gateway(parse(tomllib.loads(harness.gateway_toml(mllp, http, sink_port))), db_url=db_url)
    await gw.start()
    evaluate, commit, sizes, wait, lag = [], [], [], [], []
    writer, pipeline = gw._writer, gw.pipeline
    pipeline._evaluate = _timed(evaluate, pipeline._evaluate)
    writer._write_batch = _timed_async(commit, writer._write_batch, sizes)
    writer.write = _timed_async(wait, writer.write)
    lag_task = asyncio.create_task(_lag(lag))
    try:
        for phase, count in (("warm-up", 2000), ("measured", n)):
            for samples in (evaluate, commit, sizes, wait, lag):
                samples.clear()
            res = await asyncio.to_thread(loadgen.run_in_process, "closed", host="127.0.0.1",
                                          port=mllp, conns=conns, n=count, prefix=f"{phase[0]}-")
            print(f"{phase}: {res.acked / res.seconds:,.0f} msg/s, ACK p50 "
                  f"{loadgen.percentile(res.latencies_ms, 50):.1f} ms; evaluate p50 "
                  f"{_median_ms(evaluate) * 1000:.0f} µs; commit p50 {_median_ms(commit):.1f} "
                  f"p90 {_p90_ms(commit):.1f} ms, {statistics.mean(sizes):.1f} messages per commit; "
                  f"write wait p50 {_median_ms(wait):.1f} ms; loop lag p50 {_median_ms(lag):.2f} "
                  f"p90 {_p90_ms(lag):.2f} ms", flush=True)
    finally:
        lag_task.cancel()
        await gw.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args(argv)
    from gateway import eventloop
    from gateway import logging as log_setup
    log_setup.configure("warning")
    work = Path(tempfile.mkdtemp(prefix="labgate-latency-"))
    pg = harness.Postgres(work / "pg")
    pg.start()
    sink_port = harness.free_port()
    sink = harness.start_helper(sys.executable, "-m", "bench.servers", "sink", str(sink_port))
    try:
        db_url = asyncio.run(pg.create_database("latency"))
        eventloop.run(_run(db_url, sink_port, args.n, args.conns), "auto")
    finally:
        harness.stop(sink)
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
