"""Replay of instrument messages (ASTM E1381/E1394, POCT1-A) through the
console API, against a real gateway: the messages come over real TCP
sockets from the simulators, are rejected, the cause is fixed (a passing
control run from the device; the device registered in the configuration),
and the console's replay judges them again with the registry and QC state
as they are now, stores the new verdict, queues the result for delivery and
teaches the validation history, only once committed."""
from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from console_support import ADMIN_PW, Console, crp_table_dir

from adapters.astm.e1381 import ReceiverConfig, SenderConfig
from adapters.astm.scenarios import crp_patient, crp_qc
from support import MllpReceiver, base_config

ASTM_SERIAL = "AF2-000987"     # adapters/astm/scenarios.py
POCT_SERIAL = "000987"         # adapters/poct1a/simulator.py's default serial
FNR = "13116900216"            # the simulators' (fictitious) patient
PATIENT_KEY = hashlib.sha256(FNR.encode()).hexdigest()
SIM_TX = SenderConfig(role="instrument", ack_timeout=0.5, instrument_contention_wait=0.1,
                      busy_retry=0.1)
SIM_RX = ReceiverConfig(frame_timeout=2.0)
# Delta limits for the two point-of-care analyses (the shipped tables have
# none), so a remembered result shows as DELTA-CHECK on the next one.
DELTA_ROWS = "NPU19748,10,50,4320,test\nNPU27300,5,10,4320,test\n"


def _config(dest_port: int, tables, serials: tuple[str, ...]) -> dict:
    cfg = base_config(dest_port=dest_port, max_attempts=2)
    cfg["systems"] += [{"name": "poc-astm", "roles": ["instrument"]},
                       {"name": "poc-poct", "roles": ["instrument"]}]
    cfg["listeners"] += [
        {"name": "astm-in", "protocol": "astm", "host": "127.0.0.1", "port": 0, "system": "poc-astm"},
        {"name": "poct-in", "protocol": "poct1a", "host": "127.0.0.1", "port": 0, "system": "poc-poct"}]
    cfg["routes"].append({"name": "instrument-results", "sources": ["poc-astm", "poc-poct"],
                          "message_types": ["ASTM", "POCT1A-OBS"], "to": ["lis-mllp", "ehr-pull"]})
    known = {
        ASTM_SERIAL: {"serial": ASTM_SERIAL, "model": "CRP-POC", "site": "Sykehjem A",
                      "protocol": "astm", "system": "poc-astm", "code_map": "crp-poc",
                      "analyses": ["NPU19748"]},
        POCT_SERIAL: {"serial": POCT_SERIAL, "model": "LABGATE-SIM", "site": "Sykehjem A",
                      "protocol": "poct1a", "system": "poc-poct", "code_map": "labgate-sim",
                      "analyses": ["NPU27300", "NPU19748"]}}
    cfg["instruments"] = [known[s] for s in serials]
    cfg["operators"] = [{"id": "OP017", "name": "Kari Hansen", "hpr": "9144889",
                         "analyses": ["NPU19748", "NPU27300"], "sites": ["Sykehjem A"]}]
    cfg["validation"] = {"tables_dir": str(tables)}
    cfg["console"] = {"secure_cookie": True}
    cfg["alerts"] = {"interval_s": 3600}
    return cfg


@pytest.fixture
async def consoles(gateway_factory, tmp_path):
    """Start console gateways on one database with the given instruments
    registered (a restart with a changed configuration is how an instrument
    gets registered); the admin ``ada`` exists from the first one on."""
    receiver = await MllpReceiver().start()
    tables = crp_table_dir(tmp_path, "500")
    with open(tables / "delta_checks.csv", "a", encoding="utf-8") as f:
        f.write(DELTA_ROWS)
    made: list[Console] = []

    async def start(*serials: str) -> Console:
        gw = await gateway_factory(_config(receiver.port, tables, serials))
        c = Console(gw=gw, receiver=receiver, tables=tables, base=f"http://127.0.0.1:{gw.http_port}")
        if not made:
            await c.add_user("ada", ADMIN_PW, ["admin"])
        made.append(c)
        return c

    yield start
    for c in made:
        for cl in c.clients:
            await cl.close()
    await receiver.stop()


def _oslo(minutes: float = 0) -> datetime:
    """An analyser's wall clock (local, naive), ``minutes`` from now."""
    now = datetime.now(ZoneInfo("Europe/Oslo")).replace(tzinfo=None, microsecond=0)
    return now + timedelta(minutes=minutes)


async def _astm(c: Console, plan: list[list[bytes]]) -> None:
    from adapters.astm.simulator import run_simulation
    sent = await asyncio.wait_for(run_simulation(
        "127.0.0.1", c.gw.listeners["astm-in"].port, scenario="crp", sender_config=SIM_TX,
        receiver_config=SIM_RX, answer_timeout=5.0, byte_delay=0.0005, now=_oslo(), plan=plan), 20)
    assert sent["ok"], sent["transfers"]


async def _poct(c: Console, scenario: str, **kw) -> dict:
    from adapters.poct1a.simulator import run_simulation
    return await asyncio.wait_for(run_simulation(
        "127.0.0.1", c.gw.listeners["poct-in"].port, scenario=scenario, **kw), 20)


async def _replay(client, mid: int, reason: str) -> tuple[str, str]:
    resp = await client.post(f"/api/admin/messages/{mid}/replay", {"reason": reason})
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["message_id"], body["action"]) == (mid, "replay")
    return body["result"], body["detail"]


async def _rejected(client, source: str) -> list[int]:
    """Ids of the source's rejected messages, oldest first."""
    got = await (await client.get(f"/api/admin/messages?source={source}&status=rejected")).json()
    return sorted(m["id"] for m in got["messages"])


async def _last_verdict(c: Console) -> tuple[str, list[str]]:
    row = await c.gw.pool.fetchrow("SELECT status, verdict::text AS v FROM message ORDER BY id DESC LIMIT 1")
    return row["status"], [i["code"] for i in orjson.loads(row["v"])]


async def _outbox(c: Console, mid: int) -> dict[str, str]:
    return {r["destination"]: r["state"] for r in await c.gw.pool.fetch(
        "SELECT destination, state FROM outbox WHERE message_id = $1", mid)}


async def _wait_delivered(c: Console, mid: int) -> None:
    for _ in range(150):
        if (await _outbox(c, mid)).get("lis-mllp") == "delivered":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not delivered: {await _outbox(c, mid)}")


async def _history_rows(c: Console, mid: int) -> list[tuple]:
    return [tuple(r) for r in await c.gw.pool.fetch(
        "SELECT patient_key, code, value FROM validation_result WHERE message_id = $1", mid)]


def _failing_qc(at: datetime) -> bytes:
    return crp_qc(at).replace(b"|27|mg/L|22-34|", b"|41|mg/L|22-34|")    # target 22-34: fails


async def test_astm_result_locked_out_by_qc_is_accepted_on_replay_after_a_passing_control(consoles):
    c = await consoles(ASTM_SERIAL, POCT_SERIAL)
    base = _oslo(-30)
    patient = crp_patient(base)
    await _astm(c, [[_failing_qc(base - timedelta(minutes=10))], [patient]])
    ada = await c.client("ada", ADMIN_PW)
    [mid] = await _rejected(ada, "poc-astm")
    # Replayed while the analysis is still locked: judged with the QC state as it is now.
    assert await _replay(ada, mid, "try") == ("rejected", "QC-LOCKOUT")
    assert await _outbox(c, mid) == {}
    # The fix: the device runs a control that passes (over the same socket path).
    await _astm(c, [[crp_qc(base + timedelta(minutes=5))]])
    assert await _replay(ada, mid, "control passed") == ("accepted", "")

    await c.receiver.wait_for(1)
    await _wait_delivered(c, mid)
    assert await _outbox(c, mid) == {"lis-mllp": "delivered", "ehr-pull": "held"}
    out_id = await c.gw.pool.fetchval(
        "SELECT id FROM outbox WHERE message_id = $1 AND destination = 'lis-mllp'", mid)
    assert c.receiver.control_ids() == [f"LG{out_id}"]
    m = await c.gw.pool.fetchrow(
        "SELECT status, replays, message_type, ack, verdict::text AS v FROM message WHERE id = $1", mid)
    assert (m["status"], m["replays"], m["message_type"], bytes(m["ack"])) == ("accepted", 2, "ASTM", b"AA")
    assert "QC-LOCKOUT" not in m["v"]
    audit = [r["detail"] for r in await c.gw.pool.fetch(
        "SELECT detail FROM audit_log WHERE action = 'message.replay' AND actor = 'ada'"
        " AND resource_id = $1 ORDER BY id", str(mid))]
    assert audit == ["reason: try; result: rejected", "reason: control passed; result: accepted"]
    # The validation history has it: rows with the message, and the validator remembered it.
    assert await _history_rows(c, mid) == [(PATIENT_KEY, "NPU19748", 27.0)]
    jump = crp_patient(base + timedelta(minutes=10)).replace(b"|27|mg/L|", b"|90|mg/L|")
    await _astm(c, [[jump]])
    assert await _last_verdict(c) == ("accepted", ["DELTA-CHECK"])
    # The device's resend of the replayed message is still the same message.
    await _astm(c, [[patient]])
    assert await c.gw.pool.fetchval("SELECT duplicates FROM message WHERE id = $1", mid) == 1
    assert await c.gw.pool.fetchval("SELECT count(*) FROM message WHERE message_type = 'ASTM'") == 2


async def test_poct1a_results_of_an_unregistered_device_are_accepted_on_replay_once_registered(consoles):
    before = await consoles(ASTM_SERIAL)            # the POCT1-A device is not registered yet
    t = await _poct(before, "hba1c", qc_first=True)
    assert t["completed"] and len(t["gateway_errors"]) == 2, t
    assert all(e.startswith("INSTRUMENT-UNKNOWN") for e in t["gateway_errors"])
    ada = await before.client("ada", ADMIN_PW)
    qc_id, obs_id = await _rejected(ada, "poc-poct")
    detail = await (await ada.get(f"/api/admin/messages/{obs_id}")).json()
    # The observation does not name its device: the conversation's HEL did.
    assert "DEV.serial_id" not in detail["raw"] and detail["control_id"].startswith(POCT_SERIAL + "/")
    assert await _replay(ada, obs_id, "try") == ("rejected", "INSTRUMENT-UNKNOWN")
    verdict = (await (await ada.get(f"/api/admin/messages/{obs_id}")).json())["verdict"]
    assert [i["text"] for i in verdict] == [f"Instrument {POCT_SERIAL} is not registered"]

    # The fix: the configuration registers the device; the gateway restarts on the same database.
    await before.gw.stop()
    c = await consoles(ASTM_SERIAL, POCT_SERIAL)
    ada = await c.client("ada", ADMIN_PW)
    # Its control run was refused with it, so there is no QC on record yet.
    assert await _replay(ada, obs_id, "device registered") == ("rejected", "QC-LOCKOUT")
    assert await _replay(ada, qc_id, "device registered") == ("accepted", "")
    qc = await c.gw.pool.fetch("SELECT instrument, analysis, passed, message_id FROM qc_result")
    assert [tuple(r) for r in qc] == [(POCT_SERIAL, "NPU27300", True, qc_id)]
    assert await c.gw.pool.fetchval("SELECT message_type FROM message WHERE id = $1", qc_id) == "POCT1A-QC"
    assert await _outbox(c, qc_id) == {}              # QC is never routed
    assert await _replay(ada, obs_id, "QC on record") == ("accepted", "")

    await c.receiver.wait_for(1)
    await _wait_delivered(c, obs_id)
    assert await _outbox(c, obs_id) == {"lis-mllp": "delivered", "ehr-pull": "held"}
    m = await c.gw.pool.fetchrow("SELECT status, replays, ack FROM message WHERE id = $1", obs_id)
    assert (m["status"], m["replays"], bytes(m["ack"])) == ("accepted", 3, b"AA")
    assert await _history_rows(c, obs_id) == [(PATIENT_KEY, "NPU27300", 48.0)]
    assert [p.value for p in c.gw.validator.results.get(PATIENT_KEY, "NPU27300")] == [48.0]
    # The device is not told: replay sends nothing to it (no contact recorded either).
    assert await c.gw.pool.fetchval("SELECT last_seen FROM instrument WHERE serial = $1",
                                    POCT_SERIAL) is None


async def test_a_replay_preview_remembers_nothing(consoles):
    c = await consoles(ASTM_SERIAL, POCT_SERIAL)
    base = _oslo(-30)
    await _astm(c, [[_failing_qc(base - timedelta(minutes=10))], [crp_patient(base)],
                    [crp_qc(base + timedelta(minutes=5))]])
    row = await c.gw.pool.fetchrow(
        "SELECT id, protocol, raw, source, peer, control_id, received_at FROM message"
        " WHERE status = 'rejected'")
    preview = c.gw.instruments.pipeline.evaluate(
        row["protocol"], bytes(row["raw"]), row["source"], peer=row["peer"],
        control_id=row["control_id"], received=row["received_at"])
    assert preview.record.status == "accepted" and preview.record.history is not None
    assert dict(preview.record.destinations) == {"lis-mllp": "pending", "ehr-pull": "held"}
    # Judged, not stored: nothing in the database, nothing in the validator's memory.
    assert await c.gw.pool.fetchval("SELECT status FROM message WHERE id = $1", row["id"]) == "rejected"
    assert await _outbox(c, row["id"]) == {} and await _history_rows(c, row["id"]) == []
    assert c.gw.validator.results.get(PATIENT_KEY, "NPU19748") == []
    jump = crp_patient(base + timedelta(minutes=10)).replace(b"|27|mg/L|", b"|90|mg/L|")
    await _astm(c, [[jump]])
    assert await _last_verdict(c) == ("accepted", [])      # no DELTA-CHECK against the preview


async def test_bulk_replay_takes_an_unregistered_instruments_control_run_before_its_results(consoles):
    before = await consoles(POCT_SERIAL)             # the ASTM analyser is not registered yet
    base = _oslo(-30)
    await _astm(before, [[crp_qc(base - timedelta(minutes=5))], [crp_patient(base)]])
    assert [r["message_type"] for r in await before.gw.pool.fetch(
        "SELECT message_type FROM message WHERE status = 'rejected' ORDER BY id")] == ["ASTM", "ASTM"]
    await before.gw.stop()
    c = await consoles(ASTM_SERIAL, POCT_SERIAL)
    ada = await c.client("ada", ADMIN_PW)
    resp = await ada.post("/api/admin/messages/replay",
                          {"reason": "analyser registered",
                           "filter": {"status": "rejected", "source": "poc-astm"}})
    body = await resp.json()
    assert resp.status == 200, body
    # Oldest first: the control run is on record (and in the QC cache) before its results are judged.
    assert body["summary"] == {"accepted": 2}, body
    assert [tuple(r) for r in await c.gw.pool.fetch(
        "SELECT message_type, status FROM message ORDER BY id")] == [("ASTM-QC", "accepted"),
                                                                   ("ASTM", "accepted")]
    await c.receiver.wait_for(1)
    assert c.gw.validator.results.get(PATIENT_KEY, "NPU19748") != []
