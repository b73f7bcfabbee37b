"""µs per message on DOMAIN.md E9 for the inbound HL7 v2 hot path.

(a) plain split into segments/fields/components (the floor), (b) lean parse,
(c) lean parse + to_bundle + orjson.dumps, (d) hl7apy parse_message.

    python bench/parse_map.py [--seconds 2] [--bench-message]

``--bench-message`` measures the 11-segment ORU^R01 of bench/messages.py
(the one bench/run.py sends) instead of E9.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mappings.hl7v2.parser import parse  # noqa: E402
from mappings.hl7v2.to_fhir import to_bundle  # noqa: E402

E9 = (ROOT / "tests" / "mappings_hl7v2" / "golden" / "e9.hl7").read_bytes()


def plain_split(raw: bytes):
    text = raw.decode("utf-8")
    return [[f.split("^") for f in seg.split("|")] for seg in text.split("\r") if seg]


def lean_parse(raw: bytes):
    return parse(raw)


def lean_map_dump(raw: bytes):
    bundle, _ = to_bundle(parse(raw))
    return orjson.dumps(bundle)


def hl7apy_parse(raw: bytes):
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message
    return parse_message(raw.decode("utf-8"), find_groups=True,
                         validation_level=VALIDATION_LEVEL.TOLERANT)


def measure(fn, seconds: float, message: bytes = E9) -> tuple[float, int]:
    """Mean µs per call over at least ``seconds`` (after a warm-up)."""
    for _ in range(3):
        fn(message)
    n, start = 0, time.perf_counter()
    while True:
        fn(message)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n * 1e6, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--bench-message", action="store_true",
                    help="use bench/messages.py's 11-segment ORU^R01 instead of E9")
    args = ap.parse_args()
    message, label = E9, "E9"
    if args.bench_message:
        from bench.messages import oru_r01
        message, label = oru_r01("PARSEMAP-1", 1), "bench ORU^R01"
    cases = [("a plain split floor", plain_split), ("b lean parse", lean_parse),
             ("c lean parse+to_bundle+orjson", lean_map_dump), ("d hl7apy parse_message", hl7apy_parse)]
    segments = message.count(b"\r")
    print(f"{label} ({len(message)} bytes, {segments} segments), python {sys.version.split()[0]}")
    for name, fn in cases:
        us, n = measure(fn, args.seconds, message)
        print(f"{name:34s} {us:10.1f} µs/message  ({1e6 / us:9.0f} msg/s on one core, n={n})")


if __name__ == "__main__":
    main()
