"""A device that resends an observation gets the answer it got the first time,
even when the instrument's state has changed since (QC failed in between)."""
from __future__ import annotations

from datetime import datetime, timezone

from adapters.poct1a import parse_message
from inst_support import POCT_SERIAL, instrument_config

NOW = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _obs(control_id: str, role: str, value: str) -> bytes:
    if role == "OBS":
        subject = ('<PT><PT.patient_id V="13116900216"/><OBS><OBS.observation_id V="CRP" SN="LABGATE-SIM"/>'
                   f'<OBS.value V="{value}" U="mg/L"/></OBS></PT>')
        kind = "OBS.R01"
    else:
        subject = ('<CTC><CTC.name V="CRP Control II"/><CTC.lot_number V="CII-55821"/></CTC>'
                   f'<OBS><OBS.observation_id V="CRP" SN="LABGATE-SIM"/><OBS.value V="{value}" U="mg/L"/></OBS>')
        kind = "OBS.R02"
    return (f'<{kind}><HDR><HDR.control_id V="{control_id}"/><HDR.version_id V="POCT1"/>'
            f'<HDR.creation_dttm V="{NOW}"/></HDR><DEV><DEV.serial_id V="{POCT_SERIAL}"/></DEV>'
            f'<SVC><SVC.role_cd V="{role}"/><SVC.observation_dttm V="{NOW}"/>{subject}'
            f'<OPR><OPR.operator_id V="OP017"/></OPR></SVC></{kind}>').encode()


async def test_resend_after_a_failed_qc_gets_the_original_acceptance(gateway_factory):
    gw = await gateway_factory(instrument_config())
    pipeline = gw.instruments.pipeline

    async def send(raw: bytes):
        return await pipeline.poct_observation(parse_message(raw), "poc-poct", "127.0.0.1")

    assert await send(_obs("1", "LQC", "27")) == (True, None)          # QC passes
    patient = _obs("2", "OBS", "12")
    assert await send(patient) == (True, None)                          # accepted, delivered
    assert (await send(_obs("3", "LQC", "41")))[0] is True              # QC run stored: it fails
    assert await send(patient) == (True, None)                          # the resend: same answer
    assert await gw.pool.fetchval("SELECT count(*) FROM message WHERE message_type = 'POCT1A-OBS'") == 1

    refused = _obs("4", "OBS", "13")                                    # a new result while locked
    accepted, text = await send(refused)
    assert not accepted and text.startswith("QC-LOCKOUT")
    assert await send(_obs("5", "LQC", "27")) == (True, None)           # QC passes again: unlocked
    assert await send(refused) == (False, text)                          # its resend: the same AE


async def test_astm_parse_errors_and_duplicates_are_counted_like_hl7(gateway_factory):
    gw = await gateway_factory(instrument_config())
    pipeline = gw.instruments.pipeline
    sample = gw.metrics.registry.get_sample_value
    await pipeline.astm_message(b"P|1\rL|1|N\r", "poc-astm", "127.0.0.1")     # no H record
    assert sample("labgate_messages_rejected_total", {"source": "poc-astm", "type": "ASTM"}) == 1
    assert sample("labgate_messages_received_total", {"source": "poc-astm", "type": "ASTM"}) == 1

    qc = _obs("1", "LQC", "27")
    await pipeline.poct_observation(parse_message(qc), "poc-poct", "127.0.0.1")
    await pipeline.poct_observation(parse_message(qc), "poc-poct", "127.0.0.1")   # identical resend
    assert sample("labgate_messages_received_total", {"source": "poc-poct", "type": "POCT1A-QC"}) == 1
    assert sample("labgate_messages_duplicate_total", {"source": "poc-poct"}) == 1
