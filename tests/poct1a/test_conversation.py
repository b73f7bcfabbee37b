"""The sans-io gateway conversation, transition by transition, bytes in and bytes out."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from adapters.poct1a.build import LOCK, Directive, MessageFactory, Operator, OperatorList
from adapters.poct1a.conversation import (
    ACK_TIMEOUT, ACK_UNEXPECTED, ACK_WRONG_CONTROL_ID, CONTROL_ID_MISSING, DEVICE_ESCAPE,
    EXPECTED_HELLO, IDLE_TIMEOUT, MESSAGE_TIMEOUT, UNSUPPORTED_MESSAGE, ConversationConfig,
    ConversationEnded, GatewayConversation, ObservationReceived, PushAcknowledged, State)
from adapters.poct1a.stream import StreamSplitter
from adapters.poct1a.xml import XML_DTD_FORBIDDEN, XML_MALFORMED, XML_TOO_LARGE, parse_message

CLOCK = "2025-03-14T10:00:00+01:00"


def conv(**kw) -> GatewayConversation:
    return GatewayConversation(ConversationConfig(**kw), clock=lambda: CLOCK)


def sent(c: GatewayConversation):
    """Parse what the gateway queued: list of PoctMessage."""
    return [parse_message(f) for f in StreamSplitter().feed(c.data_to_send())]


def summary(msgs):
    """(type, own control id, acked id, ACK type / reason) per sent message."""
    out = []
    for m in msgs:
        extra = (m.value("ACK.ack_control_id"), m.value("ACK.type_cd")) if m.msg_type == "ACK.R01" \
            else (m.value("TRM.reason_cd"),) if m.msg_type == "END.R01" else ()
        out.append((m.msg_type, m.control_id, *extra))
    return out


def kinds(events):
    return [type(e).__name__ for e in events]


@pytest.fixture
def opened(device_msg):
    """A conversation after HEL (ACKed) and DST (ACKed); output drained."""
    c = conv()
    c.receive_data(device_msg("HEL.R01", "10001"))
    c.receive_data(device_msg("DST.R01", "10002"))
    c.data_to_send()
    return c


# AWAIT_HELLO ----------------------------------------------------------------------

def test_hello_is_acknowledged_byte_exact(device_msg):
    c = conv()
    assert c.state is State.AWAIT_HELLO
    events = c.receive_data(device_msg("HEL.R01", "10001"))
    assert kinds(events) == ["HelloReceived"] and events[0].message.value("DEV.serial_id") == "000987"
    assert c.data_to_send() == (
        b'<?xml version="1.0" encoding="UTF-8"?><ACK.R01><HDR><HDR.control_id V="1" />'
        b'<HDR.version_id V="POCT1" /><HDR.creation_dttm V="2025-03-14T10:00:00+01:00" /></HDR>'
        b'<ACK><ACK.type_cd V="AA" /><ACK.ack_control_id V="10001" /></ACK></ACK.R01>')
    assert c.state is State.OPEN and c.hello is not None


def test_domain_e1_hello_is_accepted(domain_examples):
    c = conv()
    assert kinds(c.receive_data(domain_examples["E1"])) == ["HelloReceived"]
    assert summary(sent(c)) == [("ACK.R01", "1", "10001", "AA")]


def test_anything_before_hello_is_refused_and_ends(device_msg):
    c = conv()
    events = c.receive_data(device_msg("OBS.R01", "10027"))
    assert kinds(events) == ["ProtocolError", "ConversationEnded"]
    assert events[0].code == EXPECTED_HELLO and events[0].fatal
    msgs = sent(c)
    assert summary(msgs) == [("ACK.R01", "1", "10027", "AE"), ("END.R01", "2", "ERR")]
    assert msgs[0].value("ACK.note_txt").startswith(EXPECTED_HELLO)
    assert c.closed and c.receive_data(device_msg("HEL.R01", "1")) == [] and c.data_to_send() == b""


def test_garbage_first_gets_escape_and_end():
    c = conv()
    events = c.receive_data(b"\x16\x03\x01 TLS hello?")
    assert events[0].code.startswith("POCT1A-XML-")
    msgs = sent(c)
    assert [m.msg_type for m in msgs] == ["ESC.R01", "END.R01"]
    assert msgs[0].value("ESC.note_txt") and c.closed


# OPEN: device messages -------------------------------------------------------------

def test_status_is_acknowledged(device_msg):
    c = conv()
    c.receive_data(device_msg("HEL.R01", "10001"))
    c.data_to_send()
    events = c.receive_data(device_msg("DST.R01", "10002"))
    assert kinds(events) == ["StatusReceived"]
    assert summary(sent(c)) == [("ACK.R01", "2", "10002", "AA")]


def test_observation_waits_for_a_decision_then_acks(opened, device_msg):
    events = opened.receive_data(device_msg("OBS.R01", "10003"))
    assert kinds(events) == ["ObservationReceived"] and events[0].control_id == "10003"
    assert opened.data_to_send() == b"" and opened.pending_decisions == ["10003"]
    assert opened.acknowledge_observation("10003", True)
    assert summary(sent(opened)) == [("ACK.R01", "3", "10003", "AA")]
    assert opened.pending_decisions == []
    assert not opened.acknowledge_observation("10003", True)   # already answered
    assert not opened.acknowledge_observation("nope", True)    # never seen
    assert opened.data_to_send() == b""


def test_rejected_observation_gets_ae_with_the_error_text(opened, device_msg):
    opened.receive_data(device_msg("OBS.R01", "10003"))
    opened.acknowledge_observation("10003", False, "QC-LOCKOUT: last QC for CRP failed")
    (ack,) = sent(opened)
    assert (ack.value("ACK.type_cd"), ack.value("ACK.ack_control_id")) == ("AE", "10003")
    assert ack.value("ACK.note_txt") == "QC-LOCKOUT: last QC for CRP failed"
    assert opened.state is State.OPEN


def test_qc_observation_r02_is_an_observation_too(opened, domain_examples):
    events = opened.receive_data(domain_examples["E3"])
    assert kinds(events) == ["ObservationReceived"] and events[0].message.msg_type == "OBS.R02"


def test_duplicate_after_decision_gets_same_answer_without_reprocessing(opened, device_msg):
    obs = device_msg("OBS.R01", "10003")
    opened.receive_data(obs)
    opened.acknowledge_observation("10003", False, "no")
    first = sent(opened)[0]
    events = opened.receive_data(obs)
    assert kinds(events) == ["DuplicateReceived"]
    (again,) = sent(opened)
    assert again.value("ACK.ack_control_id") == "10003" and again.value("ACK.type_cd") == "AE"
    assert again.value("ACK.note_txt") == first.value("ACK.note_txt") == "no"
    assert int(again.control_id) == int(first.control_id) + 1


def test_resend_after_a_temporary_failure_is_decided_again(opened, device_msg):
    obs = device_msg("OBS.R01", "10004")
    opened.receive_data(obs)
    opened.acknowledge_observation("10004", False, "resend later", final=False)
    (nak,) = sent(opened)
    assert nak.value("ACK.type_cd") == "AE"
    events = opened.receive_data(obs)                    # the device resends
    assert kinds(events) == ["ObservationReceived"]      # not a cached duplicate
    assert opened.acknowledge_observation("10004", True)
    (ack,) = sent(opened)
    assert ack.value("ACK.type_cd") == "AA"


def test_duplicate_while_pending_is_answered_once(opened, device_msg):
    obs = device_msg("OBS.R01", "10003")
    opened.receive_data(obs)
    assert kinds(opened.receive_data(obs)) == ["DuplicateReceived"]
    assert opened.data_to_send() == b""
    opened.acknowledge_observation("10003", True)
    assert len(sent(opened)) == 1


def test_duplicate_status_and_hello(opened, device_msg):
    assert kinds(opened.receive_data(device_msg("DST.R01", "10002"))) == ["DuplicateReceived"]
    assert kinds(opened.receive_data(device_msg("HEL.R01", "10001"))) == ["DuplicateReceived"]
    assert [m.value("ACK.type_cd") for m in sent(opened)] == ["AA", "AA"]


def test_new_hello_in_open_state_is_accepted(opened, device_msg):
    assert kinds(opened.receive_data(device_msg("HEL.R01", "20001"))) == ["HelloReceived"]
    assert summary(sent(opened))[0][2:] == ("20001", "AA")


def test_end_of_topic_and_keep_alive(opened, device_msg):
    assert kinds(opened.receive_data(device_msg("EOT.R01", "10004"))) == ["TopicEnded"]
    assert kinds(opened.receive_data(device_msg("KPA.R01", "10005"))) == ["OtherReceived"]
    assert [s[2:] for s in summary(sent(opened))] == [("10004", "AA"), ("10005", "AA")]


def test_unsupported_type_gets_ae_and_the_conversation_goes_on(opened, device_msg):
    events = opened.receive_data(device_msg("REQ.R01", "10004"))
    assert kinds(events) == ["ProtocolError"] and events[0].code == UNSUPPORTED_MESSAGE
    assert not events[0].fatal
    (ack,) = sent(opened)
    assert ack.value("ACK.type_cd") == "AE" and UNSUPPORTED_MESSAGE in ack.value("ACK.note_txt")
    assert opened.state is State.OPEN


def test_missing_control_id_is_fatal(opened):
    events = opened.receive_data(b"<DST.R01><HDR><HDR.version_id V='POCT1'/></HDR></DST.R01>")
    assert events[0].code == CONTROL_ID_MISSING
    assert [m.msg_type for m in sent(opened)] == ["ESC.R01", "END.R01"] and opened.closed


def test_device_end_closes_silently(opened, device_msg):
    events = opened.receive_data(device_msg("END.R01", "10009"))
    assert kinds(events) == ["ConversationEnded"] and events[0].by == "device"
    assert events[0].reason == "NRM"
    assert opened.data_to_send() == b"" and opened.closed


def test_messages_after_end_in_same_chunk_are_ignored(opened, device_msg):
    events = opened.receive_data(device_msg("END.R01", "10009") + device_msg("DST.R01", "10010"))
    assert kinds(events) == ["ConversationEnded"] and opened.data_to_send() == b""


def test_several_messages_in_one_chunk(device_msg):
    c = conv()
    events = c.receive_data(device_msg("HEL.R01", "1") + b"\n" + device_msg("DST.R01", "2")
                            + device_msg("OBS.R01", "3"))
    assert kinds(events) == ["HelloReceived", "StatusReceived", "ObservationReceived"]
    assert [s[2] for s in summary(sent(c))] == ["1", "2"]


# OPEN: pushes from the gateway -------------------------------------------------------

def test_pushes_are_held_until_status_then_run_one_at_a_time(device_msg, device_ack):
    c = conv()
    c.receive_data(device_msg("HEL.R01", "10001"))
    c.push(OperatorList((Operator("OP017", "Kari", "4"),)))
    c.push(Directive(LOCK, (("DTV.target_cd", "CRP"),)))
    assert summary(sent(c)) == [("ACK.R01", "1", "10001", "AA")]  # held: no DST yet
    c.receive_data(device_msg("DST.R01", "10002"))
    assert summary(sent(c)) == [("ACK.R01", "2", "10002", "AA"), ("OPL.R01", "3")]
    assert c.awaiting_ack == "3" and c.waiting_for == "ack"
    events = c.receive_data(device_ack("10003", "3"))
    assert events == [PushAcknowledged("3", "OPL.R01", True, None)]
    (eot,) = sent(c)
    assert (eot.msg_type, eot.control_id, eot.value("EOT.topic_cd")) == ("EOT.R01", "4", "OPL")
    c.receive_data(device_ack("10004", "4"))
    (dtv,) = sent(c)
    assert (dtv.msg_type, dtv.control_id, dtv.value("DTV.command_cd")) == ("DTV.R01", "5", "LOCK")
    events = c.receive_data(device_ack("10005", "5", "AE"))
    assert events == [PushAcknowledged("5", "DTV.R01", False, None)]
    assert c.awaiting_ack is None and c.data_to_send() == b"" and c.state is State.OPEN


def test_push_after_hello_mode_sends_at_once(device_msg):
    c = conv(push_after="hello")
    c.receive_data(device_msg("HEL.R01", "10001"))
    c.push(Directive("SET_TIME", (("TM.dttm", CLOCK),)))
    assert [m.msg_type for m in sent(c)] == ["ACK.R01", "DTV.R01"]


def test_decided_observation_also_opens_the_gate(device_msg):
    c = conv()
    c.receive_data(device_msg("HEL.R01", "1"))
    c.push(Directive(LOCK))
    c.receive_data(device_msg("OBS.R01", "2"))
    c.data_to_send()
    c.acknowledge_observation("2", True)
    assert [m.msg_type for m in sent(c)] == ["ACK.R01", "DTV.R01"]


def test_device_ack_with_vendor_spelling_is_accepted(opened, device_ack):
    opened.push(Directive(LOCK))
    (dtv,) = sent(opened)
    events = opened.receive_data(device_ack("10003", dtv.control_id, "AA",
                                            spelling=("ACK.type_id", "ACK.control_id")))
    assert events == [PushAcknowledged(dtv.control_id, "DTV.R01", True, None)]


def test_ack_for_wrong_control_id_is_fatal(opened, device_ack):
    opened.push(Directive(LOCK))
    (dtv,) = sent(opened)
    events = opened.receive_data(device_ack("10003", "999"))
    assert kinds(events) == ["ProtocolError", "ConversationEnded"]
    assert events[0].code == ACK_WRONG_CONTROL_ID
    esc, end = sent(opened)
    assert esc.msg_type == "ESC.R01" and esc.value("ESC.esc_cd") == ACK_WRONG_CONTROL_ID
    assert esc.value("ESC.ref_control_id") == "10003"
    assert end.value("TRM.reason_cd") == "ERR" and opened.closed


def test_ack_when_nothing_is_awaited_is_fatal(opened, device_ack):
    events = opened.receive_data(device_ack("10003", "1"))
    assert events[0].code == ACK_UNEXPECTED
    assert [m.msg_type for m in sent(opened)] == ["ESC.R01", "END.R01"]


def test_device_escape_counts_as_a_refusal_of_the_push(opened):
    opened.push(Directive(LOCK))
    opened.data_to_send()
    esc = MessageFactory(first_control_id=10003, clock=lambda: CLOCK).escape("UNSUPPORTED", "no lock")
    events = opened.receive_data(esc.data)
    assert kinds(events) == ["ProtocolError", "PushAcknowledged"]
    assert events[0].code == DEVICE_ESCAPE and not events[0].fatal
    assert events[1].accepted is False and events[1].note == "no lock"
    assert opened.awaiting_ack is None and opened.state is State.OPEN


def test_push_when_closed_is_ignored_and_bad_item_raises(opened):
    with pytest.raises(TypeError):
        opened.push("not a push")
    opened.end()
    opened.data_to_send()
    opened.push(Directive(LOCK))
    assert opened.data_to_send() == b""


# timeouts, transport, end -----------------------------------------------------------

def test_ack_timeout_ends(opened):
    opened.push(Directive(LOCK))
    opened.data_to_send()
    events = opened.timeout()
    assert events[0].code == ACK_TIMEOUT and events[0].fatal
    assert summary(sent(opened)) == [("END.R01", "4", "TMO")] and opened.closed


def test_message_timeout_for_a_half_sent_message(opened):
    opened.receive_data(b"<OBS.R01><HDR>")
    assert opened.waiting_for == "message"
    assert opened.timeout()[0].code == MESSAGE_TIMEOUT
    (end,) = sent(opened)
    assert MESSAGE_TIMEOUT in end.value("TRM.note_txt")


def test_idle_timeout_ends_normally(opened):
    assert opened.waiting_for == "idle"
    events = opened.timeout()
    assert events[0].code == IDLE_TIMEOUT and not events[0].fatal
    assert [m.msg_type for m in sent(opened)] == ["END.R01"]
    assert opened.waiting_for == "nothing" and opened.timeout() == []


def test_connection_lost(opened, device_msg):
    opened.receive_data(device_msg("OBS.R01", "10003"))
    assert opened.connection_lost() == [ConversationEnded("transport", "connection closed")]
    assert opened.connection_lost() == [] and opened.receive_data(b"<x/>") == []
    assert not opened.acknowledge_observation("10003", True)
    assert opened.data_to_send() == b""


def test_gateway_end(opened):
    events = opened.end("shutting down")
    assert events == [ConversationEnded("gateway", "shutting down")]
    (end,) = sent(opened)
    assert (end.value("TRM.reason_cd"), end.value("TRM.note_txt")) == ("NRM", "shutting down")
    assert opened.end() == []


# hostile input inside a conversation -------------------------------------------------

def test_malformed_message_gets_ae_for_its_sniffed_control_id(opened):
    events = opened.receive_data(b'<OBS.R01><HDR><HDR.control_id V="10003"/></HDR></OBS.R02>')
    assert events[0].code == XML_MALFORMED
    ack, end = sent(opened)
    assert (ack.value("ACK.ack_control_id"), ack.value("ACK.type_cd")) == ("10003", "AE")
    assert XML_MALFORMED in ack.value("ACK.note_txt") and end.msg_type == "END.R01"


def test_entity_bomb_in_conversation(opened):
    from adapters.poct1a.simulator import BILLION_LAUGHS
    events = opened.receive_data(BILLION_LAUGHS)
    assert events[0].code == XML_DTD_FORBIDDEN
    assert [m.msg_type for m in sent(opened)] == ["ESC.R01", "END.R01"]


def test_oversized_message_in_conversation(device_msg):
    c = conv(max_message_bytes=2000)
    c.receive_data(device_msg("HEL.R01", "1"))
    c.data_to_send()
    events = c.receive_data(b'<OBS.R01><HDR><HDR.control_id V="2"/></HDR>' + b" " * 5000)
    assert events[0].code == XML_TOO_LARGE
    ack, end = sent(c)
    assert ack.value("ACK.ack_control_id") == "2" and end.msg_type == "END.R01"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60),
                          st.sampled_from([b"<HEL.R01><HDR><HDR.control_id V='1'/></HDR></HEL.R01>",
                                           b"<OBS.R01><HDR><HDR.control_id V='2'/></HDR></OBS.R01>",
                                           b"<ACK.R01><HDR><HDR.control_id V='3'/></HDR></ACK.R01>",
                                           b"<END.R01/>", b"<!DOCTYPE x>", b"<a>", b"</a>", b" "])),
                max_size=10),
       st.lists(st.sampled_from(["timeout", "decide", "push", "end"]), max_size=3))
def test_never_raises_and_ends_with_end(chunks, actions):
    c = conv()
    for chunk in chunks:
        for event in c.receive_data(chunk):
            if isinstance(event, ObservationReceived):
                c.acknowledge_observation(event.control_id, False, "x")
    for action in actions:
        {"timeout": c.timeout, "end": c.end,
         "decide": lambda: c.acknowledge_observation("2", True),
         "push": lambda: c.push(Directive(LOCK))}[action]()
    out = [m.msg_type for m in sent(c)]
    assert out.count("END.R01") <= 1
    if "END.R01" in out:
        assert out[-1] == "END.R01" and c.closed
    assert all(t in {"ACK.R01", "ESC.R01", "END.R01", "DTV.R01"} for t in out)
