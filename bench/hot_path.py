"""µs per message for each CPU step of the gateway's MLLP path, without I/O.

The steps the gateway runs for every ORU^R01 it receives and delivers:
parse, map to a FHIR bundle, validate, build the ACK, serialise the bundle
for storage, and at delivery time read it back, build the outbound ORU^R01
and check the destination's ACK. Each step runs over the same ``--n``
benchmark messages (bench/messages.py), ``--repeat`` times; the best
repeat is reported, with the garbage collector paused while a step is timed
(a collection's cost depends on everything else alive in the process, not
on the step).

    python -m bench.hot_path [--n 2000] [--repeat 5] [--steps parse,to_bundle]

Use it before and after a change to one step; ``bench.run`` measures the
whole gateway.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.messages import oru_r01  # noqa: E402
from gateway.config import parse as parse_config  # noqa: E402
from gateway.delivery import _check_ack  # noqa: E402
from gateway.validator import Validator, load_rule_tables  # noqa: E402
from mappings.hl7v2.ack import build_ack  # noqa: E402
from mappings.hl7v2.from_fhir import bundle_to_oru_r01  # noqa: E402
from mappings.hl7v2.parser import parse  # noqa: E402
from mappings.hl7v2.to_fhir import to_bundle  # noqa: E402

NOW = datetime(2025, 3, 14, 9, 35, tzinfo=timezone.utc)
SINK_ACK = b"MSH|^~\\&|SINK||LABGATE||20250101000000||ACK^R01^ACK|S1|P|2.5.1\rMSA|AA|LG1\r"
CONFIG = {
    "gateway": {"name": "LABGATE", "facility": "BENCH"},
    "systems": [{"name": "poc", "roles": ["instrument"]}, {"name": "lis", "roles": ["lis"]}],
}


def _validator():
    """check() + remember(), as the pipeline runs them for a stored message."""
    config = parse_config(CONFIG)
    validator = Validator(config, load_rule_tables(config))

    def validate(bundle: dict, source: str) -> list:
        checked = validator.check(bundle, source)
        validator.remember(checked.history)
        return checked.issues
    return validate


def _outbound(bundle: dict) -> bytes:
    return bundle_to_oru_r01(bundle, control_id="LG1", timestamp=NOW, sending_app="LABGATE",
                             sending_facility="BENCH", receiving_app="lis")


def steps(n: int) -> dict:
    """name -> (function, its inputs), in the order the gateway runs them."""
    raws = [oru_r01(f"HP{i}", i) for i in range(n)]
    parsed = [parse(r) for r in raws]
    bundles = [to_bundle(m)[0] for m in parsed]
    stored = [orjson.dumps(b) for b in bundles]
    validate = _validator()
    return {
        "parse": (parse, raws),
        "to_bundle": (to_bundle, parsed),
        "validate": (lambda b: validate(b, "poc"), bundles),
        "ack": (lambda m: build_ack(m.header(), "AA", [], control_id="LG1", timestamp=NOW), parsed),
        "dumps": (orjson.dumps, bundles),
        "loads": (orjson.loads, stored),
        "outbound": (_outbound, [orjson.loads(s) for s in stored]),
        "check_ack": (_check_ack, [SINK_ACK] * n),
    }


def best_us(fn, items, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            for x in items:
                fn(x)
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best / len(items) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", default="", help="comma-separated subset (default: all)")
    args = ap.parse_args()
    table = steps(args.n)
    wanted = [s for s in args.steps.split(",") if s] or list(table)
    total = 0.0
    for name in wanted:
        fn, items = table[name]
        us = best_us(fn, items, args.repeat)
        total += us
        print(f"{name:10s} {us:8.1f} µs")
    if len(wanted) > 1:
        print(f"{'total':10s} {total:8.1f} µs")


if __name__ == "__main__":
    main()
