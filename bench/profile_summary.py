"""Turn py-spy's raw (collapsed-stack) output into a per-step summary of
where the gateway process spends its time.

Each collapsed line is ``frame;frame;…;frame COUNT``. A sample is charged to
the first step (outermost match wins, so ``parse`` inside ``to_bundle`` is
still "map") whose pattern appears in its stack; "idle" is the event loop
waiting in epoll.
"""
from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# (step, substrings of a frame "function (file:line)") — order matters.
STEPS = [
    ("idle (epoll wait)", ("select (selectors.py",)),
    ("delivery: outbound build + send", ("_send_rows (gateway/delivery.py", "bundle_to_oru_r01")),
    ("delivery: claim/finish SQL", ("run_once (gateway/delivery.py",)),
    ("parse (lean HL7 v2)", ("parse (mappings/hl7v2/parser.py",)),
    ("map to FHIR bundle", ("to_bundle (mappings/hl7v2/to_fhir.py",)),
    ("validate (clinical rules)", ("gateway/validator.py", "gateway/validation/")),
    ("ACK build", ("build_ack (mappings/hl7v2/ack.py",)),
    ("orjson/sha256 record", ("_record (gateway/pipeline.py",)),
    ("store: group commit (asyncpg)", ("gateway/store.py",)),
    ("MLLP framing / socket I/O", ("adapters/mllp/",)),
    ("asyncpg protocol", ("asyncpg/",)),
    ("asyncio event loop / transports", ("asyncio/",)),
]


def classify(stack: str) -> str:
    for step, pats in STEPS:
        if any(p in stack for p in pats):
            return step
    return "other"


def summarize_file(path: Path, top: int = 25) -> str:
    steps: Counter = Counter()
    leaves: Counter = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        steps[classify(stack)] += n
        leaves[stack.split(";")[-1]] += n
    if not total:
        return "# Gateway profile\n\nNo samples.\n"
    busy = total - steps["idle (epoll wait)"]
    # py-spy records only samples in which the thread is active; under uvloop
    # the wait in epoll is inside the C loop, so idle time leaves no sample
    # at all and "busy" here is not a utilisation (bench.run's "gateway
    # event loop cores" column is).
    out = ["# Gateway profile (py-spy, 32 senders)", "",
           f"{total} samples of the active gateway threads; shares are of that time.", "",
           "| step | share of all samples | share of busy |", "|---|---:|---:|"]
    for step, n in steps.most_common():
        share_busy = "" if step.startswith("idle") else f"{n / max(busy, 1):.1%}"
        out.append(f"| {step} | {n / total:.1%} | {share_busy} |")
    out += ["", f"Top {top} leaf frames (self time):", "", "| frame | share |", "|---|---:|"]
    for leaf, n in leaves.most_common(top):
        out.append(f"| `{leaf}` | {n / total:.1%} |")
    return "\n".join(out) + "\n"


def fold(raw: Path, out: Path, min_share: float = 0.001) -> None:
    """Write a compact collapsed-stack file (line numbers dropped, stacks
    under ``min_share`` of samples left out) that flamegraph.pl, speedscope
    or inferno render as a flame graph."""
    merged: Counter = Counter()
    for line in Path(raw).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
            merged[";".join(frames)] += int(count)
    total = sum(merged.values()) or 1
    keep = [f"{s} {n}" for s, n in merged.most_common() if n / total >= min_share]
    Path(out).write_text("\n".join(keep) + "\n")


if __name__ == "__main__":
    print(summarize_file(Path(sys.argv[1])))
