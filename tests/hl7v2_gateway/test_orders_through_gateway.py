"""An order (OML^O21 with ask-at-order-entry OBX) through the real gateway to an
MLLP destination goes out as OML^O21 with the same orders, specimens and notes."""
from __future__ import annotations

from pathlib import Path

from support import MllpReceiver, base_config, field, mllp_exchange, segments

from mappings.hl7v2.parser import parse
from mappings.hl7v2.to_fhir import to_bundle

GOLDEN = Path(__file__).resolve().parents[1] / "mappings_hl7v2" / "golden"


async def test_oml_in_oml_out(gateway_factory):
    lab = await MllpReceiver("AA").start()
    try:
        cfg = base_config(dest_port=lab.port)
        # The golden order codes are local and its height OBX is LOINC-only (an
        # ask-at-order-entry answer the clinical rules still judge as a result).
        cfg["systems"][1]["rules"] = {"ORDER-ANALYSIS-UNKNOWN": "warn", "ANALYSIS-UNKNOWN": "warn"}
        cfg["listeners"][0]["system"] = "ehr"
        cfg["routes"] = [{"name": "orders", "sources": ["ehr"], "message_types": ["OML^O21"],
                          "to": ["lis-mllp"]}]
        gw = await gateway_factory(cfg)
        raw = (GOLDEN / "oml_o21.hl7").read_bytes()
        [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [raw])
        assert field(ack, "MSA", 1) == "AA", segments(ack, "ERR")
        await lab.wait_for(1)
        out = lab.messages[0]
        assert field(out, "MSH", 9) == "OML^O21^OML_O21"
        assert [s.split("|")[0] for s in out.decode().split("\r") if s] == \
            ["MSH", "PID", "ORC", "OBR", "NTE", "OBX", "SPM", "NTE", "ORC", "OBR", "SPM"]
        sent, _ = to_bundle(parse(out))
        original, _ = to_bundle(parse(raw))
        strip = lambda b: [e["resource"] for e in b["entry"]]   # noqa: E731 - fullUrls differ
        assert len(strip(sent)) == len(strip(original))
        assert [r.get("note") for r in strip(sent)] == [r.get("note") for r in strip(original)]
    finally:
        await lab.stop()
