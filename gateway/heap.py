"""The garbage collector of a long-running gateway process.

CPython's full (generation 2) collection walks every tracked object in the
process. After start-up that is ~50,000 objects that live for ever (modules,
configuration, rule tables, the FHIR models), and a full collection while
messages flow took 16-38 ms in the benchmark: every message in flight waits
for it, and it was most of the ACK latency's p99 at 500 msg/s
(docs/performance.md). ``settle`` moves what exists once the gateway has
started into the permanent generation, so later full collections walk only
what the traffic created.
"""
from __future__ import annotations

import gc


def settle() -> int:
    """Collect start-up garbage, then exempt the survivors from later
    collections (they are never freed, which is what they are for).
    Returns how many objects are now permanent."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
