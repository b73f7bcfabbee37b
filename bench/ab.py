"""A/B: the same load on several gateway variants, interleaved, repeated.

    python -m bench.ab VARIANT VARIANT ... [--rounds 3]

A VARIANT is ``label=ROOT[,KEY=VALUE...]``: ROOT is the checkout whose
gateway runs ("." for this one, or a ``git archive`` snapshot of another
commit), and each KEY=VALUE is put into the ``[gateway]`` table of its
configuration (``dest.KEY=VALUE``: into the MLLP destination's; the word
``split``: the gateway as two processes, ``--role intake`` and ``--role
delivery``), e.g.::

    python -m bench.ab before=/tmp/snap-a84e13b after=. \\
        after-asyncio=.,event_loop='"asyncio"' after-nogather=.,dest.gather_ms=0 \\
        after-split=.,split --rounds 3

One run of ``bench.run`` against another on this shared 2-core machine
differs by ±15 % (disk fsync latency and neighbours change over minutes),
which hides a change of a few per cent. Here every round runs every variant
back to back, each on a fresh database, and the report gives the median and
the spread over rounds per figure. The phases are bench.run's: 1 sender,
32 senders, and an offered 500 msg/s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.run import GatewayUnderTest  # noqa: E402

FIGURES = ("msg_per_s", "delivered_per_s", "p50_ms", "p99_ms", "cpu_gateway", "cpu_postgres")


def parse_variant(text: str) -> tuple[str, Path, list[str]]:
    label, _, rest = text.partition("=")
    root, *settings = rest.split(",")
    return label, (ROOT if root in ("", ".") else Path(root).resolve()), settings


def run_variant(pg, work: Path, label: str, root: Path, settings: list[str], rnd: int,
                args) -> list[dict]:
    os.environ["LABGATE_BENCH_ROOT"] = str(root)
    db_url = asyncio.run(pg.create_database(f"ab_{label.replace('-', '_')}_{rnd}"))
    vwork = work / f"{label}-{rnd}"
    vwork.mkdir()
    toml = harness.gateway_toml   # the variant's settings go into [gateway]
    split = "split" in settings
    settings = [s for s in settings if s != "split"]
    gateway = "".join(s + "\n" for s in settings if not s.startswith("dest."))
    dest = "".join(s[len("dest."):] + "\n" for s in settings if s.startswith("dest."))

    def with_settings(*a, **k):
        text = toml(*a, **k).replace('facility = "BENCH"\n', 'facility = "BENCH"\n' + gateway, 1)
        return text.replace("ack_timeout_s = 5.0\n", "ack_timeout_s = 5.0\n" + dest, 1)

    harness.gateway_toml = with_settings
    try:
        gut = GatewayUnderTest(pg, db_url, vwork, split=split)
    finally:
        harness.gateway_toml = toml
    try:
        gut.measure("warm-up", "closed", 8, n=2000, prefix="W-")
        return [
            gut.measure(f"{label}: 1 sender", "closed", 1, n=args.n1, prefix="A1-"),
            gut.measure(f"{label}: 32 senders", "closed", 32, n=args.n32, prefix="A32-"),
            gut.measure(f"{label}: offered 500/s", "open", 32, rate=500, seconds=args.rate_seconds,
                        prefix="R-"),
        ]
    finally:
        gut.stop()


def report(variants: list[str], rows: dict[str, list[list[dict]]]) -> str:
    out = ["| variant | phase | " + " | ".join(f"{f} (median, min–max)" for f in FIGURES) + " |",
           "|---|---|" + "---:|" * len(FIGURES)]
    for label in variants:
        for phase in range(3):
            runs = [r[phase] for r in rows[label]]
            cells = []
            for f in FIGURES:
                vals = [r[f] for r in runs]
                cells.append(f"{statistics.median(vals):.2f} ({min(vals):.2f}–{max(vals):.2f})")
            out.append(f"| {label} | {runs[0]['name'].split(': ', 1)[1]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n32", type=int, default=15000)
    ap.add_argument("--rate-seconds", type=float, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ab.md")
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variants]
    work = Path(tempfile.mkdtemp(prefix="labgate-ab-"))
    pg = harness.Postgres(work / "pgdata")
    pg.start()
    rows: dict[str, list[list[dict]]] = {label: [] for label, _, _ in variants}
    try:
        for rnd in range(args.rounds):
            for label, root, settings in variants:
                print(f"round {rnd + 1}: {label}", flush=True)
                rows[label].append(run_variant(pg, work, label, root, settings, rnd, args))
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    machine = harness.machine()
    text = (f"A/B run on {machine['nproc']} × {machine['cpu']}, {args.rounds} rounds, variants "
            + ", ".join(f"`{v}`" for v in args.variants) + "\n\n" + report(list(rows), rows) + "\n")
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
