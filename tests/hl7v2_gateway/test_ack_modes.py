"""Original and enhanced acknowledgement modes through the real gateway.

Enhanced mode: commit ACK (CA/CR) on the connection per MSH-15, application
ACK (AA/AE) per MSH-16 as its own message to the source's ack_destination,
through the outbox. Duplicates replay the stored answer and queue nothing.
"""
from __future__ import annotations

import asyncio

import pytest
from support import MllpReceiver, base_config, field, mllp_exchange, oru_r01, segments


def _with_ack_types(msg: bytes, accept: str, app: str) -> bytes:
    return msg.replace(b"|P|2.5.1|||AL|NE||", f"|P|2.5.1|||{accept}|{app}||".encode())


@pytest.fixture
async def acks():
    receiver = await MllpReceiver("CA").start()
    yield receiver
    await receiver.stop()


async def _gateway(gateway_factory, acks, mode: str = "enhanced"):
    cfg = base_config()
    cfg["destinations"].append({"name": "poc-acks", "type": "mllp", "system": "poc",
                                "host": "127.0.0.1", "port": acks.port,
                                "backoff_initial_s": 0.05, "backoff_max_s": 0.2})
    cfg["systems"][0].update({"ack_mode": mode, "ack_destination": "poc-acks"})
    return await gateway_factory(cfg)


async def _send(gw, *msgs: bytes) -> list[bytes]:
    return await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, list(msgs))


def _err_fields(ack: bytes) -> list[list[str]]:
    return [e.split("|") for e in segments(ack, "ERR")]


async def test_enhanced_accepted_message_gets_ca_then_aa_via_the_outbox(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks)
    [commit] = await _send(gw, _with_ack_types(oru_r01("E-1"), "AL", "AL"))
    assert field(commit, "MSA", 1) == "CA" and field(commit, "MSA", 2) == "E-1"
    await acks.wait_for(1)
    app = acks.messages[0]
    assert field(app, "MSH", 9) == "ACK^R01^ACK"
    assert field(app, "MSA", 1) == "AA" and field(app, "MSA", 2) == "E-1"
    assert field(app, "MSH", 5) == "POCDM"          # back to the sender of the original
    row = await gw.pool.fetchrow("SELECT kind, state FROM outbox WHERE destination = 'poc-acks'")
    await _until(lambda: gw.pool.fetchval(
        "SELECT state FROM outbox WHERE destination = 'poc-acks'"), "delivered")
    assert row["kind"] == "app_ack"


async def test_enhanced_content_error_is_ca_then_ae_with_err_details(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks)
    [commit] = await _send(gw, _with_ack_types(oru_r01("E-2", fnr="13116900217"), "AL", "ER"))
    assert field(commit, "MSA", 1) == "CA"
    assert segments(commit, "ERR") == []        # the verdict travels in the application ACK
    await acks.wait_for(1)
    app = acks.messages[0]
    assert field(app, "MSA", 1) == "AE"
    errs = [e for e in _err_fields(app) if e[5].startswith("PID-FNR-CHECKSUM")]
    assert errs, segments(app, "ERR")
    err = errs[0]
    assert err[2].split("^")[:3] == ["PID", "1", "3"]      # ERR-2 location
    assert err[4] == "E"                                     # ERR-4 severity
    assert err[5].split("^")[1]                              # readable text


async def test_msh16_er_and_su_decide_whether_an_application_ack_is_sent(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks)
    replies = await _send(gw, _with_ack_types(oru_r01("E-3"), "AL", "ER"),   # fine: no app ACK
                          _with_ack_types(oru_r01("E-4"), "AL", "SU"),       # fine: app ACK
                          _with_ack_types(oru_r01("E-5", fnr="13116900217"), "AL", "SU"),
                          _with_ack_types(oru_r01("E-6"), "AL", "NE"))
    assert [field(r, "MSA", 1) for r in replies] == ["CA"] * 4
    await acks.wait_for(1)
    await asyncio.sleep(0.5)     # give any wrongly queued ACK time to arrive
    assert [field(m, "MSA", 2) for m in acks.messages] == ["E-4"]
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox WHERE kind = 'app_ack'") == 1


async def test_msh15_ne_sends_no_commit_ack_but_stores(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.listeners["mllp-in"].port)
    writer.write(b"\x0b" + _with_ack_types(oru_r01("E-7"), "NE", "AL") + b"\x1c\r")
    await writer.drain()
    await acks.wait_for(1)          # the application ACK still comes, through the outbox
    assert field(acks.messages[0], "MSA", 1) == "AA"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 0.5)
    writer.close()


async def test_unsupported_message_in_enhanced_mode_is_cr_without_app_ack(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks)
    adt = _with_ack_types(oru_r01("E-8"), "AL", "AL").replace(b"ORU^R01^ORU_R01", b"ADT^A01^ADT_A01")
    [commit] = await _send(gw, adt)
    assert field(commit, "MSA", 1) == "CR"
    assert any("HL7-UNSUPPORTED-MESSAGE-TYPE" in e for e in segments(commit, "ERR"))
    await asyncio.sleep(0.3)
    assert acks.messages == []


async def test_duplicates_in_enhanced_mode(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks)
    msg = _with_ack_types(oru_r01("E-9"), "AL", "AL")
    first, again = await _send(gw, msg, msg)
    assert first == again and field(first, "MSA", 1) == "CA"
    [conflict] = await _send(gw, _with_ack_types(oru_r01("E-9", value="28"), "AL", "AL"))
    assert field(conflict, "MSA", 1) == "CR"
    assert any("DUPLICATE-CONTROL-ID-CONFLICT" in e for e in segments(conflict, "ERR"))
    await acks.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(acks.messages) == 1


async def test_original_mode_source_answers_aa_ae_whatever_msh15_16_say(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks, mode="original")
    ok, bad = await _send(gw, _with_ack_types(oru_r01("O-1"), "AL", "AL"),
                          _with_ack_types(oru_r01("O-2", fnr="13116900217"), "AL", "AL"))
    assert field(ok, "MSA", 1) == "AA" and field(bad, "MSA", 1) == "AE"
    assert any("PID-FNR-CHECKSUM" in e for e in segments(bad, "ERR"))
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox WHERE kind = 'app_ack'") == 0


async def test_enhanced_source_with_empty_msh15_16_gets_original_mode(gateway_factory, acks):
    gw = await _gateway(gateway_factory, acks)
    [ack] = await _send(gw, _with_ack_types(oru_r01("O-3"), "", ""))
    assert field(ack, "MSA", 1) == "AA"


def test_enhanced_mode_needs_an_mllp_ack_destination():
    from gateway.config import ConfigError, parse
    cfg = base_config()
    cfg["systems"][0]["ack_mode"] = "enhanced"
    with pytest.raises(ConfigError, match=r"systems\[0\]\.ack_destination"):
        parse(cfg)
    cfg["systems"][0]["ack_destination"] = "ehr-pull"
    with pytest.raises(ConfigError, match=r"systems\[0\]\.ack_destination"):
        parse(cfg)


async def _until(fetch, want, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (got := await fetch()) != want:
        assert loop.time() < end, f"still {got!r}, waiting for {want!r}"
        await asyncio.sleep(0.05)


async def test_err_names_rule_segment_field_text_and_severity_in_original_mode(gateway_factory,
                                                                              acks):
    gw = await _gateway(gateway_factory, acks, mode="original")
    [ack] = await _send(gw, oru_r01("O-4", code="NOR05172^B-Hemoglobin^NLK", unit="g/dL",
                                   value="45"))
    assert field(ack, "MSA", 1) == "AE"
    [err] = [e for e in _err_fields(ack) if e[5].startswith("VALUE-IMPLAUSIBLE")]
    assert err[2].split("^")[:3] == ["OBX", "1", "5"]
    assert err[3].endswith("HL70357") and err[4] == "E"
    assert err[5].split("^")[2] == "L" and err[5].split("^")[1]


async def test_replay_of_an_enhanced_mode_message_queues_its_application_ack(gateway_factory, acks,
                                                                             tmp_path):
    """A rejected message replayed after a table fix is accepted; its sender
    asked (MSH-16 SU) for an application ACK on success, so the replay
    queues one, and the accepted results enter the validation history."""
    import shutil
    from pathlib import Path

    from gateway.authz import Principal
    from gateway.console import actions
    from gateway.validator import load_rule_tables

    tables = tmp_path / "tables"
    shutil.copytree(Path(__file__).resolve().parents[2] / "mappings" / "tables", tables)
    analyses = tables / "analyses.csv"
    good = analyses.read_text(encoding="utf-8")
    crp = next(line for line in good.splitlines() if line.startswith("NPU19748,")).split(",")
    analyses.write_text(good.replace(",".join(crp), ",".join(crp[:8] + ["10"] + crp[9:])),
                        encoding="utf-8")                  # CRP above 10 mg/L "implausible"
    cfg = base_config()
    cfg["destinations"].append({"name": "poc-acks", "type": "mllp", "system": "poc",
                                "host": "127.0.0.1", "port": acks.port,
                                "backoff_initial_s": 0.05, "backoff_max_s": 0.2})
    cfg["systems"][0].update({"ack_mode": "enhanced", "ack_destination": "poc-acks"})
    cfg["validation"] = {"tables_dir": str(tables)}
    gw = await gateway_factory(cfg)
    [commit] = await _send(gw, _with_ack_types(oru_r01("E-R1"), "AL", "SU"))
    assert field(commit, "MSA", 1) == "CA"
    mid = await gw.pool.fetchval("SELECT id FROM message WHERE control_id = 'E-R1'")
    assert await gw.pool.fetchval("SELECT status FROM message WHERE id = $1", mid) == "rejected"
    assert await gw.pool.fetchval("SELECT count(*) FROM outbox WHERE kind = 'app_ack'") == 0

    analyses.write_text(good, encoding="utf-8")
    gw.validator.reload(load_rule_tables(gw.config))
    admin = Principal("user", "ada", frozenset({"admin"}))
    async with gw.pool.acquire() as conn, conn.transaction():
        out = await actions.replay(gw, conn, mid, admin, "table fixed", "127.0.0.1")
    assert out.result == "accepted"
    await acks.wait_for(1)
    assert [(field(m, "MSA", 1), field(m, "MSA", 2)) for m in acks.messages] == [("AA", "E-R1")]
    assert await gw.pool.fetchval(
        "SELECT count(*) FROM validation_result WHERE message_id = $1", mid) == 1
