"""The clinical-safety set (cases.toml) through a real gateway.

HL7 v2 cases go over MLLP to a gateway on a real embedded PostgreSQL and are
judged by the ACK: MSA-1 (AA = accepted, AE/AR = rejected) and the rule codes
in ERR-5. The set of codes must match exactly, so a rule that fires where it
should not fails the case as surely as one that stays silent.

FHIR cases (orders, and results with specimen temperature/condition or
reagent-lot details the HL7 v2 mapping does not carry) go through the same
gateway's validator (``gw.validator.check(bundle, source)``), the object every
intake path calls, and an accepted one is remembered as the FHIR endpoints do
after storing it: the FHIR order endpoint was not available when this set
was written. Their verdict is the issue list.
"""
from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from messages import OUTCOMES, fhir_order, fhir_result, hl7_message, utcnow
from support import base_config, field, mllp_exchange, segments

from gateway.validation import QcState
from mappings.issue import rejects

CASES = tomllib.loads((Path(__file__).parent / "cases.toml").read_text("utf-8"))["case"]

LISTENER = {"poc": "mllp-in", "poc-lenient": "mllp-lenient"}


def _config() -> dict:
    cfg = base_config()
    cfg["systems"].append({"name": "poc-lenient", "roles": ["instrument"],
                           "rules": {"ANALYSIS-UNKNOWN": "warn", "OPERATOR-NOT-CERTIFIED": "warn"}})
    cfg["listeners"].append({"name": "mllp-lenient", "protocol": "mllp", "host": "127.0.0.1",
                             "port": 0, "system": "poc-lenient"})
    cfg["routes"][0]["sources"].append("poc-lenient")
    return cfg


def _qc_state(device: str, analysis: str):
    """The QC record the test laboratory keeps: one good device, three locked ones."""
    now = datetime.now(timezone.utc)
    return {
        "AF2-000987": QcState(last_passed=now - timedelta(hours=1)),
        "AF2-QCFAIL": QcState(last_passed=now - timedelta(hours=1), last_failed=True),
        "AF2-QCOLD": QcState(last_passed=now - timedelta(days=3)),
    }.get(device)


def _ack_codes(ack: bytes) -> tuple[str, set[str]]:
    verdict = "accepted" if field(ack, "MSA", 1) == "AA" else "rejected"
    codes = {seg.split("|")[5].split("^")[0] for seg in segments(ack, "ERR")}
    return verdict, codes


async def _run_hl7(gw, no: int, case: dict, msg: dict, ctrl: str) -> tuple[str, set[str]]:
    port = gw.listeners[LISTENER[case.get("source", "poc")]].port
    [ack] = await mllp_exchange("127.0.0.1", port, [hl7_message(no, msg, utcnow(), ctrl)])
    return _ack_codes(ack)


def _run_fhir(gw, no: int, case: dict, msg: dict) -> tuple[str, set[str]]:
    kind = case["kind"]
    bundle = (fhir_order if kind == "fhir-order" else fhir_result)(no, msg, utcnow())
    source = case.get("source", "ehr" if kind == "fhir-order" else "poc")
    checked = gw.validator.check(bundle, source)
    gw.validator.remember(checked.history)      # stored: the endpoints remember after commit
    issues = checked.issues
    return ("rejected" if rejects(issues) else "accepted"), {i.code for i in issues}


async def _stored_problems(gw, ctrl: str, want: dict) -> list[str]:
    """Compare the stored canonical bundle and verdict of message ``ctrl`` with ``want``."""
    row = await gw.pool.fetchrow(
        "SELECT bundle::text AS bundle, verdict::text AS verdict FROM message WHERE control_id = $1",
        ctrl)
    if row is None or row["bundle"] is None:
        return ["message not stored with a bundle"]
    bundle, verdict = json.loads(row["bundle"]), json.loads(row["verdict"])
    ob = next(e["resource"] for e in bundle["entry"]
              if e["resource"]["resourceType"] == "Observation")
    vq = ob.get("valueQuantity", {})
    problems = []
    if "value" in want and (vq.get("value"), vq.get("code")) != (want["value"], want["unit"]):
        problems.append(f"stored {vq.get('value')} {vq.get('code')}, want {want['value']} {want['unit']}")
    if "interpretation" in want:
        codes = [c["code"] for i in ob.get("interpretation", []) for c in i.get("coding", [])]
        if want["interpretation"] not in codes:
            problems.append(f"interpretation {codes}, want {want['interpretation']}")
    if "tag" in want and want["tag"] not in [t.get("code") for t in ob.get("meta", {}).get("tag", [])]:
        problems.append(f"no meta.tag {want['tag']}")
    missing = set(want.get("verdict_codes", ())) - {i["code"] for i in verdict}
    if missing:
        problems.append(f"stored verdict lacks {sorted(missing)}")
    return problems


async def _run(gw, no: int, case: dict, msg: dict, ctrl: str):
    if case.get("kind", "hl7") == "hl7":
        return await _run_hl7(gw, no, case, msg, ctrl)
    return _run_fhir(gw, no, case, msg)


def test_the_set_is_large_and_complete():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    for c in CASES:
        assert c["expect"] in ("accepted", "rejected") and c["reason"].strip(), c["id"]
        assert c.get("kind", "hl7") in ("hl7", "fhir-order", "fhir-result"), c["id"]
        assert c.get("source", "poc") in LISTENER, c["id"]


async def test_clinical_safety_set(gateway_factory):
    gw = await gateway_factory(_config())
    gw.validator.qc_state = _qc_state
    gw.validator.operator_certified = {"OP017": {"*"}, "9144889": {"*"}}
    failures = []
    for no, case in enumerate(CASES):
        problems = []
        for n, before in enumerate(case.get("before", [])):
            got = await _run(gw, no, case, before, f"CS{no}B{n}")
            if got[0] != "accepted":
                problems.append(f"setup message {n} was {got[0]} {sorted(got[1])}")
        verdict, codes = await _run(gw, no, case, case.get("msg", {}), f"CS{no}")
        expected = set(case["codes"])
        if verdict != case["expect"] or codes != expected:
            problems.append(f"expected {case['expect']} {sorted(expected)}, "
                            f"got {verdict} {sorted(codes)}")
        if "stored" in case:
            problems += await _stored_problems(gw, f"CS{no}", case["stored"])
        OUTCOMES[case["id"]] = not problems
        if problems:
            failures.append(f"{case['id']}: {'; '.join(problems)}  ({case['reason']})")
    assert not failures, "\n".join(failures)
