"""The validation history learns a message only once it is stored.

The validator's check() judges and works out what a message adds to the
history; the pipelines store those rows with the message and remember them
after the commit. A message that is judged but not stored (the console's
replay preview, a FHIR order refused by the order rules, a $receive
stability check) must never become somebody's "previous result" or
"recent order" (a spurious DELTA-CHECK or ORDER-DUPLICATE).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from support import base_config, field, mllp_exchange, potassium_oru, segments

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fhir"))
from fhirkit import Client, crp_order, order_config  # noqa: E402

FNR = "13116900216"


def _potassium(ctrl: str, value: str, collected_min: float, unit: str = "mmol/L") -> bytes:
    return potassium_oru(ctrl, value, collected_min, unit=unit, fnr=FNR)


async def _send(gw, msg: bytes) -> bytes:
    [ack] = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [msg])
    return ack


async def test_a_message_judged_but_not_stored_is_no_previous_result(gateway_factory):
    gw = await gateway_factory(base_config())
    preview = gw.pipeline.evaluate(_potassium("P-1", "3.9", -24 * 60), "poc")
    assert preview.status == "accepted" and preview.history is not None
    ack = await _send(gw, _potassium("P-2", "5.9", -30))
    assert field(ack, "MSA", 1) == "AA"
    assert "DELTA-CHECK" not in str(segments(ack, "ERR"))       # 3.9 was never stored
    ack = await _send(gw, _potassium("P-3", "3.8", -20))
    assert "DELTA-CHECK" in str(segments(ack, "ERR"))           # 5.9 was


async def test_stored_rows_are_the_validators_once_in_the_canonical_unit(gateway_factory):
    gw = await gateway_factory(base_config())
    ack = await _send(gw, _potassium("U-1", "4.1", -60, unit="mmol/l"))
    assert field(ack, "MSA", 1) == "AA"
    rows = await gw.pool.fetch("SELECT patient_key, code, value, unit FROM validation_result")
    # one row (the trigger did not add a second), in the unit the rules compared in
    assert [tuple(r) for r in rows] == [(hashlib.sha256(FNR.encode()).hexdigest(), "NPU03230",
                                         4.1, "mmol/L")]


async def test_rows_without_the_validators_facts_are_read_from_the_bundle(gateway_factory):
    """A record stored without precomputed rows (history=None) is indexed by
    the database from its bundle, in the same transaction."""
    gw = await gateway_factory(base_config())
    record = gw.pipeline.evaluate(_potassium("B-1", "4.2", -60), "poc")
    record.history = None
    await gw._writer.write(record)
    rows = await gw.pool.fetch("SELECT code, value, unit FROM validation_result")
    assert [tuple(r) for r in rows] == [("NPU03230", 4.2, "mmol/L")]


async def _fhir_clients(gw):
    from gateway import tokens
    async with gw.pool.acquire() as conn:
        return Client(f"http://127.0.0.1:{gw.http_port}", (await tokens.create(conn, "ehr"))[1])


def _crp_order(status: str = "active", hours_ago: float = 2) -> dict:
    return crp_order(FNR, status=status, hours_ago=hours_ago)


def _recent_order_issues(gw) -> list[str]:
    later = _crp_order(hours_ago=1)
    return [i.code for i in gw.validator.check(later, "ehr").issues
            if i.code == "ORDER-DUPLICATE"]


async def test_a_refused_fhir_order_is_no_recent_order(gateway_factory):
    gw = await gateway_factory(order_config())
    ehr = await _fhir_clients(gw)
    try:
        status, body, _ = await ehr.post("/fhir", _crp_order(status="draft"))   # ORDER-STATUS
        assert status == 422, body
        assert _recent_order_issues(gw) == []          # the refused order was judged, not stored
        status, body, _ = await ehr.post("/fhir", _crp_order())
        assert status == 200, body
        assert _recent_order_issues(gw) == ["ORDER-DUPLICATE"]   # the stored one counts
    finally:
        await ehr.close()
