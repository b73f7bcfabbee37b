"""Two gateways on one database share the instruments' QC state.

An instrument's failed QC stored through one gateway must lock its patient
results in the other as well (migration 0018's notifications, read by
gateway/history_feed.py), e.g. after the instrument reconnected through a
load balancer to the other gateway. Real ASTM sockets on both.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from adapters.astm.scenarios import crp_patient, crp_qc

from inst_support import ASTM_SERIAL, astm_sim, instrument_config, oslo_now, verdicts


def _locked(gw) -> bool:
    state = gw.instruments.registry.qc_state(ASTM_SERIAL, "NPU19748")
    return state is not None and state.last_failed


async def _until(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_qc_failed_through_one_gateway_locks_the_instrument_in_the_other(gateway_factory):
    a = await gateway_factory(instrument_config())
    b = await gateway_factory(instrument_config())
    now = oslo_now()
    passing = crp_qc(now - timedelta(minutes=30))
    sent = await astm_sim(b, "crp", now=now, plan=[[passing]])     # B knows a passed QC
    assert sent["ok"], sent["transfers"]
    failing = crp_qc(now - timedelta(minutes=10)).replace(b"|27|mg/L|22-34|", b"|41|mg/L|22-34|")
    sent = await astm_sim(a, "crp", now=now, plan=[[failing]])     # the failure goes through A
    assert sent["ok"], sent["transfers"]
    await _until(lambda: _locked(b))
    sent = await astm_sim(b, "crp", now=now, plan=[[crp_patient(now)]])
    assert sent["ok"], sent["transfers"]
    assert (await verdicts(b))[-1] == ("ASTM", "rejected", ["QC-LOCKOUT"])
    # and a passed QC through B unlocks it in A
    later = now + timedelta(minutes=5)
    sent = await astm_sim(b, "crp", now=later, plan=[[crp_qc(later)]])
    assert sent["ok"], sent["transfers"]
    await _until(lambda: not _locked(a))
