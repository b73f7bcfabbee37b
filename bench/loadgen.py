"""MLLP load generator, run in its own process so it does not share the
gateway's (or the bench driver's) event loop.

Closed loop: ``conns`` connections each send one message, wait for the ACK,
send the next (``n`` messages in all). Open loop: ``rate`` messages per second
spread evenly over the connections for ``seconds``; the latency of each
message is measured from when it was *due*, so a gateway that falls behind
shows up in the tail (no coordinated omission).
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass, field

from bench.messages import oru_r01

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


@dataclass
class LoadResult:
    sent: int = 0
    acked: int = 0           # MSA-1 AA or CA
    negative: int = 0        # AE / AR / CE / CR
    failed: int = 0          # no ACK (connection closed, timeout)
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    acked_ids: list[str] = field(default_factory=list)
    # control id -> (first send started, positive ACK received), perf_counter
    # seconds; kept with keep_ids, for checking delivery order against ACK order
    timeline: dict[str, tuple[float, float]] = field(default_factory=dict)


def _msa(ack: bytes) -> bytes:
    i = ack.find(b"MSA|")
    return ack[i + 4:i + 6] if i >= 0 else b"??"


async def _exchange(reader, writer, payload: bytes, timeout: float) -> bytes:
    writer.write(VT + payload + FS + CR)
    data = await asyncio.wait_for(reader.readuntil(FS + CR), timeout)
    return data[data.index(VT) + 1:-2]


def _record(res: LoadResult, ack: bytes, t0: float, ctrl: str, keep_ids: bool,
            first: float | None = None) -> None:
    now = time.perf_counter()
    res.latencies_ms.append((now - t0) * 1000)
    if _msa(ack) in (b"AA", b"CA"):
        res.acked += 1
        if keep_ids:
            res.acked_ids.append(ctrl)
            res.timeline[ctrl] = (first if first is not None else t0, now)
    else:
        res.negative += 1


async def closed_loop(host: str, port: int, conns: int, n: int, prefix: str, *,
                      timeout: float = 30.0, keep_ids: bool = False,
                      retry: bool = False) -> LoadResult:
    """``n`` messages over ``conns`` connections, one outstanding per connection.

    With ``retry`` a message without a positive ACK is sent again (after a
    reconnect) until it gets one, as a well-behaved MLLP sender does.
    """
    res = LoadResult()
    counter = iter(range(n))

    async def worker():
        reader = writer = None
        for i in counter:
            ctrl = f"{prefix}{i}"
            payload = oru_r01(ctrl, i)
            first = time.perf_counter()
            while True:
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    t0 = time.perf_counter()
                    res.sent += 1
                    ack = await _exchange(reader, writer, payload, timeout)
                    _record(res, ack, t0, ctrl, keep_ids, first)
                    if not retry or _msa(ack) in (b"AA", b"CA"):
                        break
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                    res.failed += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if not retry:
                        break
                    await asyncio.sleep(0.2)
        if writer is not None:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    res.seconds = time.perf_counter() - start
    return res


async def open_loop(host: str, port: int, conns: int, rate: float, seconds: float,
                    prefix: str, *, timeout: float = 30.0) -> LoadResult:
    """Offer ``rate`` msg/s for ``seconds``; latency counts from the due time."""
    res = LoadResult()
    n = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def worker(k: int):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for j in range(k, n, conns):
                due = start + j / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                ctrl = f"{prefix}{j}"
                res.sent += 1
                try:
                    ack = await _exchange(reader, writer, oru_r01(ctrl, j), timeout)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                    res.failed += 1
                    return
                _record(res, ack, due, ctrl, False)
        finally:
            writer.close()

    await asyncio.gather(*(worker(k) for k in range(conns)))
    res.seconds = time.perf_counter() - start
    return res


def _child(kind: str, kwargs: dict, conn) -> None:
    fn = closed_loop if kind == "closed" else open_loop
    try:
        conn.send(asdict(asyncio.run(fn(**kwargs))))
    except BaseException as e:  # reported to the parent
        conn.send({"error": repr(e)})
    conn.close()


def run_in_process(kind: str, **kwargs) -> LoadResult:
    """Run a closed or open loop in a fresh process and return its result."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(kind, kwargs, child), daemon=True)
    p.start()
    child.close()
    data = parent.recv()
    p.join()
    if "error" in data:
        raise RuntimeError(f"load generator failed: {data['error']}")
    return LoadResult(**data)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]
