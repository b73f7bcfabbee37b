"""Clinical rules run on the real MLLP path and reach the sender as ERR."""
from __future__ import annotations

from support import base_config, field, mllp_exchange, oru_r01, segments


async def _ack(gw, msg):
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [msg])
    return ack


async def test_wrong_check_digit_is_rejected_with_rule_code(gateway_factory):
    gw = await gateway_factory(base_config())
    ack = await _ack(gw, oru_r01("V-1", fnr="13116900217"))
    assert field(ack, "MSA", 1) == "AE"
    assert any("PID-FNR-CHECKSUM" in e for e in segments(ack, "ERR"))
    assert await gw.pool.fetchval("SELECT status FROM message") == "rejected"


async def test_implausible_value_rejected_and_critical_value_accepted_flagged(gateway_factory):
    gw = await gateway_factory(base_config())
    bad = await _ack(gw, oru_r01("V-2", code="NOR05172^B-Hemoglobin^NLK", unit="g/dL", value="45"))
    assert field(bad, "MSA", 1) == "AE" and any("VALUE-IMPLAUSIBLE" in e for e in segments(bad, "ERR"))
    crit = await _ack(gw, oru_r01("V-3", code="NPU03230^P-Kalium^NLK", unit="mmol/L", value="7.1",
                                 specimen="SER^Serum^HL70487"))
    assert field(crit, "MSA", 1) == "AA"
    assert any("CRITICAL-VALUE" in e for e in segments(crit, "ERR"))   # a warning, in ERR-4 W
    status = await gw.pool.fetchval("SELECT status FROM message WHERE control_id = 'V-3'")
    assert status == "accepted"


async def test_rule_set_to_warn_for_a_source_accepts(gateway_factory):
    cfg = base_config()
    cfg["systems"][0]["rules"] = {"ANALYSIS-UNKNOWN": "warn"}
    gw = await gateway_factory(cfg)
    ack = await _ack(gw, oru_r01("V-4", code="XYZ123^Local thing^L"))
    assert field(ack, "MSA", 1) == "AA"
    assert any("ANALYSIS-UNKNOWN" in e and "|W|" in e for e in segments(ack, "ERR"))
