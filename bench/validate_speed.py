"""µs per message for clinical validation of a 5-Observation result bundle.

Measures (a) ``gateway.validation.validate`` with a fresh RuleContext per
message (the rules alone) and (b) the gateway's ``Validator`` as the pipelines
call it (per-source settings, QC and operator lookups, delta/duplicate history,
and remembering the accepted message). The bundle is built here, not by a
mapper, so the number does not move when a mapping changes. Each message is a
fresh copy (validation converts units and flags critical values in place); the
copies are made before timing.

    python bench/validate_speed.py [--seconds 2] [--root DIR]

``--root`` runs the same measurement against another checkout (e.g. an
exported older commit, ``git archive HEAD | tar -x -C /tmp/before``).
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

NLK = "urn:oid:2.16.578.1.12.4.1.1.7280"
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
V2_0487 = "http://terminology.hl7.org/CodeSystem/v2-0487"
UCUM = "http://unitsofmeasure.org"
ANALYSED = "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time"

RESULTS = [  # code, value, unit — CRP, Hb in g/L (converted), leukocytes, glucose, INR
    ("NPU19748", 27, "mg/L"), ("NOR05172", 131, "g/L"), ("NPU02593", 7.2, "10*9/L"),
    ("NPU22089", 6.2, "mmol/L"), ("NPU01685", 2.4, "1"),
]


def bundle(now: datetime) -> dict:
    col = (now - timedelta(minutes=30)).isoformat(timespec="seconds")
    ana = (now - timedelta(minutes=20)).isoformat(timespec="seconds")
    entries = [
        ("urn:uuid:p", {"resourceType": "Patient",
                        "identifier": [{"system": FNR, "value": "13116900216"}]}),
        ("urn:uuid:d", {"resourceType": "Practitioner",
                        "identifier": [{"system": HPR, "value": "9144889"}]}),
        ("urn:uuid:o", {"resourceType": "Practitioner",
                        "identifier": [{"system": "urn:labgate:operator:POCDM", "value": "OP017"}]}),
        ("urn:uuid:dev", {"resourceType": "Device", "identifier": [{"value": "AF2-000987"}]}),
        ("urn:uuid:sr", {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                         "subject": {"reference": "urn:uuid:p"},
                         "requester": {"reference": "urn:uuid:d"},
                         "code": {"coding": [{"system": NLK, "code": "NPU19748"}]}}),
        ("urn:uuid:s", {"resourceType": "Specimen", "subject": {"reference": "urn:uuid:p"},
                        "type": {"coding": [{"system": V2_0487, "code": "BLDC"}]},
                        "collection": {"collectedDateTime": col}}),
    ]
    for n, (code, value, unit) in enumerate(RESULTS):
        entries.append((f"urn:uuid:obs{n}", {
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": NLK, "code": code}]},
            "subject": {"reference": "urn:uuid:p"}, "specimen": {"reference": "urn:uuid:s"},
            "effectiveDateTime": col, "issued": ana,
            "performer": [{"reference": "urn:uuid:o"}], "device": {"reference": "urn:uuid:dev"},
            "extension": [{"url": ANALYSED, "valueDateTime": ana}],
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}))
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": u, "resource": r} for u, r in entries]}


def measure(fn, raw: bytes, seconds: float) -> float:
    """Fastest round's µs per call (CPU time of this process, so other load on a
    shared machine counts less), over at least 5 rounds of fresh copies."""
    per_round = []
    n = 2000
    deadline = time.perf_counter() + seconds
    while len(per_round) < 5 or time.perf_counter() < deadline:
        copies = [orjson.loads(raw) for _ in range(n)]
        gc.collect()
        gc.disable()    # the copies' garbage is not validation's cost
        try:
            t0 = time.process_time_ns()
            for b in copies:
                fn(b)
            per_round.append((time.process_time_ns() - t0) / n / 1000)
        finally:
            gc.enable()
        if len(per_round) >= 50:
            break
    return min(per_round)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args()
    sys.path.insert(0, args.root)

    from gateway.config import parse
    from gateway.validation import QcState, RuleContext, validate
    from gateway.validator import Validator
    from mappings.tables_loader import load_tables

    now = datetime.now(timezone.utc)
    raw = orjson.dumps(bundle(now))
    tables = load_tables()
    config = parse({"systems": [{"name": "poc", "roles": ["instrument"]}]})
    qc = QcState(now - timedelta(hours=1))
    certified = {"OP017": {"*"}}

    def rules_only(b):
        validate(b, RuleContext(now=now, tables=tables))

    gw = Validator(config, tables, qc_state=lambda d, a: qc, operator_certified=certified)
    issues = gw(orjson.loads(raw), "poc")
    assert [i.code for i in issues] == ["UNIT-CONVERTED"], issues   # the bundle is clean

    a = measure(rules_only, raw, args.seconds)
    b = measure(lambda x: gw(x, "poc"), raw, args.seconds)
    import gateway
    print(f"validate_speed: {Path(gateway.__file__).parent.parent}")
    print(f"  rules only (validate + RuleContext):       {a:8.1f} µs per 5-Observation message")
    print(f"  gateway Validator (lookups, history, ...): {b:8.1f} µs per 5-Observation message")


if __name__ == "__main__":
    main()
