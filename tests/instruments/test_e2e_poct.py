"""POCT1-A2 instruments end to end: simulator -> real socket -> gateway ->
store -> EHR pull; ACK AE with rule codes; OPL and lock directives on HEL."""
from __future__ import annotations

from gateway.instruments import read_api
from mappings import systems

from inst_support import POCT_SERIAL, instrument_config, poct_sim, pull, resources, verdicts


async def test_hba1c_over_poct1a_reaches_the_ehr(gateway_factory):
    gw = await gateway_factory(instrument_config())
    t = await poct_sim(gw, "hba1c", qc_first=True)
    assert t["completed"] and t["gateway_errors"] == [], t
    assert t["operators_received"] == 1            # OP017 is certified at this site; OP099 is not
    assert all(a["type_cd"] == "AA" for a in t["acks"].values())
    assert await verdicts(gw) == [("POCT1A-QC", "accepted", []), ("POCT1A-OBS", "accepted", [])]
    (bundle,) = await pull(gw)
    (obs,) = resources(bundle, "Observation")
    nlk = next(c for c in obs["code"]["coding"] if c["system"] == systems.NLK)
    assert nlk["code"] == "NPU27300"
    assert obs["valueQuantity"]["value"] == 48 and obs["valueQuantity"]["code"] == "mmol/mol"
    assert obs["performer"][0]["identifier"]["value"] == "OP017"
    device = next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == obs["device"]["reference"])
    assert device["identifier"][0]["value"] == POCT_SERIAL
    (qc,) = await read_api.qc_history(gw.pool, POCT_SERIAL, "NPU27300")
    assert qc["result"] == "pass" and qc["lot"] == "C2-80412" and qc["level"] == "II"


async def test_failed_qc_gives_ack_ae_qc_lockout_and_a_lock_directive_next_hello(gateway_factory):
    gw = await gateway_factory(instrument_config())
    t = await poct_sim(gw, "crp", qc_first=True)     # CRP Control II 41 mg/L, target 22-34
    assert t["completed"]
    (error,) = t["gateway_errors"]
    assert error.startswith("QC-LOCKOUT")
    assert await verdicts(gw) == [("POCT1A-QC", "accepted", []),
                                  ("POCT1A-OBS", "rejected", ["QC-LOCKOUT"])]
    assert await pull(gw) == []
    inst = await read_api.instrument(gw.pool, gw.instruments.registry, POCT_SERIAL)
    states = {a["analysis"]: a["state"] for a in inst["analyses"]}
    assert states["NPU19748"] == "locked"
    again = await poct_sim(gw, "hba1c", qc_first=True)
    assert again["directives_received"] == ["LOCK"]
    assert again["gateway_errors"] == []             # HbA1c is not locked


async def test_uncertified_operator_is_refused_with_ack_ae(gateway_factory):
    gw = await gateway_factory(instrument_config())
    t = await poct_sim(gw, "hba1c", qc_first=True, operator_id="OP404")
    assert any(e.startswith("OPERATOR-NOT-CERTIFIED") for e in t["gateway_errors"]), t
    assert ("POCT1A-OBS", "rejected", ["OPERATOR-NOT-CERTIFIED"]) in await verdicts(gw)


async def test_unknown_device_gets_ack_ae_with_its_code_and_no_operator_list(gateway_factory):
    gw = await gateway_factory(instrument_config())
    t = await poct_sim(gw, "hba1c", device_serial="999999")
    assert t["operators_received"] == 0
    assert t["gateway_errors"] and all(e.startswith("INSTRUMENT-UNKNOWN") for e in t["gateway_errors"])
    assert {s for _, s, _ in await verdicts(gw)} == {"rejected"}


async def test_peer_outside_the_allow_list_is_disconnected(gateway_factory):
    cfg = instrument_config()
    cfg["listeners"][1] = {**cfg["listeners"][1], "allow": ["10.99.0.0/16"]}
    gw = await gateway_factory(cfg)
    t = await poct_sim(gw, "hba1c")
    assert not t["completed"] and t["ended_by"] in ("transport", "timeout")
    assert await gw.pool.fetchval("SELECT count(*) FROM message") == 0
