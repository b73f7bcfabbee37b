"""Instrument results routed to an MLLP destination: simulator -> real socket ->
gateway -> store -> delivery -> ORU^R01 at a receiving LIS. POCT1-A and ASTM
results carry no order or report; the LIS must still get each OBX after an
OBR (ORDER_OBSERVATION) that names the analysis, its time and status."""
from __future__ import annotations

import pytest
from support import MllpReceiver

from mappings.hl7v2.parser import parse

from inst_support import astm_sim, instrument_config, poct_sim, verdicts

NLK = {"hba1c": "NPU27300", "crp": "NPU19748"}


def _config(lis_port: int) -> dict:
    cfg = instrument_config()
    cfg["systems"].append({"name": "lis", "roles": ["lis"]})
    cfg["destinations"].append({
        "name": "lis-mllp", "type": "mllp", "system": "lis", "host": "127.0.0.1",
        "port": lis_port, "max_attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2,
        "ack_timeout_s": 2.0})
    cfg["routes"][0]["to"] = ["ehr-pull", "lis-mllp"]
    return cfg


def _assert_result_under_obr(oru: bytes, nlk: str) -> None:
    msg = parse(oru)
    names = [s.name for s in msg.segments]
    assert msg.message_type.startswith("ORU^R01")
    assert names[:4] == ["MSH", "PID", "ORC", "OBR"], names
    assert names.index("OBR") < names.index("OBX")
    obr, obx = msg.segments_named("OBR")[0], msg.segments_named("OBX")[0]
    assert obr.value(4) == obx.value(3) == nlk
    assert obr.value(7) and obr.value(7) == obx.value(14)
    assert obr.value(25) == obx.value(11) == "F"


@pytest.mark.parametrize("protocol, scenario", [("poct1a", "hba1c"), ("astm", "crp")])
async def test_instrument_result_reaches_the_lis_as_an_oru_with_obr_before_obx(
        gateway_factory, protocol, scenario):
    lis = await MllpReceiver("AA").start()
    try:
        gw = await gateway_factory(_config(lis.port))
        if protocol == "poct1a":
            sent = await poct_sim(gw, scenario, qc_first=True)
            assert sent["completed"] and sent["gateway_errors"] == [], sent
        else:
            sent = await astm_sim(gw, scenario)
            assert sent["ok"], sent["transfers"]
        kind = "POCT1A-OBS" if protocol == "poct1a" else "ASTM"
        assert (kind, "accepted", []) in await verdicts(gw)
        await lis.wait_for(1)
        (oru,) = lis.messages
        _assert_result_under_obr(oru, NLK[scenario])
    finally:
        await lis.stop()
