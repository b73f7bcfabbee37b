"""History-based rules on the real path: the trigger-fed index tables, the
start-up prefetch, restarts, and the [validation] options that shape them."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from support import REPO_ROOT, base_config, field, mllp_exchange, potassium_oru, segments, to_toml

from gateway.app import Gateway
from gateway.config import parse
from mappings import systems

FNR = "13116900216"


def _potassium(ctrl: str, value: str, collected_min: float, operator: str = "OP017") -> bytes:
    return potassium_oru(ctrl, value, collected_min, operator=operator, fnr=FNR)


async def _send(gw, msg: bytes) -> bytes:
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [msg])
    return ack


def _codes(ack: bytes) -> list[tuple[str, str]]:
    return [(s.split("|")[5].split("^")[0], s.split("|")[4]) for s in segments(ack, "ERR")]


async def test_delta_check_works_across_a_restart(db_url, tmp_path, gateway_factory):
    first = Gateway(parse(base_config()), db_url=db_url, home_dir=tmp_path)
    await first.start()
    try:
        ack = await _send(first, _potassium("D-1", "3.9", -24 * 60))
        assert field(ack, "MSA", 1) == "AA" and _codes(ack) == []
        rows = await first.pool.fetch("SELECT patient_key, code, value, unit FROM validation_result")
    finally:
        await first.stop()
    key = hashlib.sha256(FNR.encode()).hexdigest()
    assert [tuple(r) for r in rows] == [(key, "NPU03230", 3.9, "mmol/L")]   # hashed, no number

    second = await gateway_factory(base_config())           # a new process' memory: only the DB
    ack = await _send(second, _potassium("D-2", "5.9", -30))
    assert field(ack, "MSA", 1) == "AA"
    assert _codes(ack) == [("DELTA-CHECK", "W")]
    # the same process also remembers what it accepted itself, before any restart
    ack = await _send(second, _potassium("D-3", "3.8", -20))
    assert _codes(ack) == [("DELTA-CHECK", "W")]


async def test_rejected_results_do_not_enter_the_history(gateway_factory):
    gw = await gateway_factory(base_config())
    ack = await _send(gw, _potassium("R-1", "12", -60))          # implausible: rejected
    assert field(ack, "MSA", 1) == "AE"
    assert await gw.pool.fetchval("SELECT count(*) FROM validation_result") == 0
    ack = await _send(gw, _potassium("R-2", "4.0", -30))
    assert field(ack, "MSA", 1) == "AA" and _codes(ack) == []   # 12 was never a "previous"


def _order_bundle(authored: datetime) -> dict:
    pat = {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": pat["reference"], "resource": {
            "resourceType": "Patient", "identifier": [{"system": systems.FNR, "value": FNR}]}},
        {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222", "resource": {
            "resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": pat, "authoredOn": authored.isoformat(),
            "requester": {"identifier": {"system": systems.HPR, "value": "9144889"}},
            "code": {"coding": [{"system": "http://helsedir.no/fhir/CodeSystem/7280",
                                 "code": "NPU19748"}]}}}]}


async def _store(pool, bundle, status="accepted", control_id="X"):
    await pool.execute(
        "INSERT INTO message (source, protocol, control_id, content_sha256, bundle, status)"
        " VALUES ('ehr', 'fhir', $1, '\\x00'::bytea, $2::jsonb, $3)",
        control_id, json.dumps(bundle), status)


async def test_stored_orders_are_indexed_and_prefetched(db_url, tmp_path, gateway_factory):
    first = Gateway(parse(base_config()), db_url=db_url, home_dir=tmp_path)
    await first.start()
    try:
        earlier = datetime.now(timezone.utc) - timedelta(hours=2)
        await _store(first.pool, _order_bundle(earlier), control_id="O-1")
        await _store(first.pool, _order_bundle(earlier), status="rejected", control_id="O-2")
        rows = await first.pool.fetch("SELECT code, ordered_at FROM validation_order")
    finally:
        await first.stop()
    assert [(r["code"], r["ordered_at"]) for r in rows] == [("NPU19748", earlier)]
    gw = await gateway_factory(base_config())
    issues = gw.validator.check(_order_bundle(datetime.now(timezone.utc)), "ehr").issues
    assert [(i.code, i.severity) for i in issues] == [("ORDER-DUPLICATE", "warning")]


async def test_unreadable_bundles_are_stored_without_history(gateway_factory):
    gw = await gateway_factory(base_config())
    hostile = [
        {"entry": "not a list"},
        {"entry": [{"resource": {"resourceType": "Patient", "identifier": {"value": 1}}}]},
        {"entry": [{"resource": {"resourceType": "Patient", "identifier": [
            {"system": systems.FNR, "value": FNR}]}},
            {"resource": {"resourceType": "Observation", "effectiveDateTime": "2025-02-30T10:00:00",
                          "valueQuantity": {"value": 1e300},
                          "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}}},
            {"resource": {"resourceType": "Observation", "effectiveDateTime": "2025-03-01T10:00:00",
                          "valueQuantity": {"value": "7"},
                          "code": {"coding": "NPU03230"}}}]},
    ]
    for n, b in enumerate(hostile):
        await _store(gw.pool, b, control_id=f"H-{n}")
    assert await gw.pool.fetchval("SELECT count(*) FROM message") == len(hostile)
    assert await gw.pool.fetchval("SELECT count(*) FROM validation_result") == 0


async def test_operator_authorisation_flag_mode_and_system_override(gateway_factory):
    cfg = base_config()
    cfg["validation"] = {"operator_authorisation": "flag"}
    cfg["systems"].append({"name": "strict-poc", "roles": ["instrument"],
                           "rules": {"OPERATOR-NOT-CERTIFIED": "reject"}})
    cfg["listeners"].append({"name": "mllp-strict", "protocol": "mllp", "host": "127.0.0.1",
                             "port": 0, "system": "strict-poc"})
    cfg["routes"][0]["sources"].append("strict-poc")
    gw = await gateway_factory(cfg)
    gw.validator.operator_certified = {"OP017": {"NPU03230"}}
    ack = await _send(gw, _potassium("OP-1", "4.1", -30, operator="OP999"))
    assert field(ack, "MSA", 1) == "AA" and _codes(ack) == [("OPERATOR-NOT-CERTIFIED", "W")]
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-strict"].port,
                                [_potassium("OP-2", "4.1", -30, operator="OP999")])
    assert field(ack, "MSA", 1) == "AE" and _codes(ack) == [("OPERATOR-NOT-CERTIFIED", "E")]
    ack = await _send(gw, _potassium("OP-3", "4.2", -30))
    assert field(ack, "MSA", 1) == "AA" and _codes(ack) == []


def test_serve_with_a_broken_table_exits_2_naming_file_and_line(tmp_path):
    import shutil
    from mappings.tables_loader import TABLES_DIR
    tables = tmp_path / "tables"
    shutil.copytree(TABLES_DIR, tables)
    path = tables / "delta_checks.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "NPU01685,abc,25,60,x\n", encoding="utf-8")
    line = text.count("\n") + 1
    cfg = base_config()
    cfg["validation"] = {"tables_dir": str(tables)}
    cfg["database"] = {"url": "postgresql://nobody@127.0.0.1:1/none"}
    conf = tmp_path / "gw.toml"
    conf.write_text(to_toml(cfg))
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(conf)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"delta_checks.csv:{line}: column max_abs_change: 'abc' is not a number" in r.stderr
