"""Parsing, the tolerant view and the builders of adapters/poct1a."""
from __future__ import annotations

import pytest

from adapters.poct1a.build import (Directive, MessageFactory, Operator, LOCK, AckSpelling,
                                   xml_safe)
from adapters.poct1a.xml import (XML_DTD_FORBIDDEN, XML_ENTITY_FORBIDDEN, XML_MALFORMED,
                                 XML_TOO_DEEP, XML_TOO_LARGE, PoctXmlError, parse_message,
                                 sniff_control_id)
from adapters.poct1a.simulator import BILLION_LAUGHS

CLOCK = "2025-03-14T10:00:00+01:00"


def factory(**kw) -> MessageFactory:
    return MessageFactory(clock=lambda: CLOCK, **kw)


# DOMAIN.md examples -------------------------------------------------------------

def test_e1_hello_parses(domain_examples):
    m = parse_message(domain_examples["E1"])
    assert (m.msg_type, m.control_id, m.version) == ("HEL.R01", "10001", "POCT1")
    assert m.creation_dttm == "2025-03-14T07:45:02+01:00"
    assert m.value("DEV.serial_id") == "000987"
    assert m.value("DEV.device_name") == "CRP-POC Sykehjem A"  # spaces kept
    assert [n.V for n in m.findall("DSC.directives_supported_cd")] == ["START_CONTINUOUS", "SET_TIME"]
    assert m.value("DCP.application_timeout") == "60"


def test_e2_observation_parses(domain_examples):
    m = parse_message(domain_examples["E2"])
    assert (m.msg_type, m.control_id) == ("OBS.R01", "10027")
    svc = m.child("SVC")
    assert svc.value("SVC.role_cd") == "OBS"
    obs = svc.find("OBS")
    assert obs.value("OBS.observation_id") == "CRP"
    assert obs.find("OBS.observation_id").attr("SN") == "ACME"
    assert (obs.value("OBS.value"), obs.unit("OBS.value")) == ("27", "mg/L")
    assert m.value("PT.patient_id") == "13116900216"
    assert m.value("RGT.lot_number") == "10012345"


def test_e3_qc_parses(domain_examples):
    m = parse_message(domain_examples["E3"])
    assert (m.msg_type, m.control_id) == ("OBS.R02", "10031")
    assert m.value("SVC.role_cd") == "LQC"
    assert m.value("CTC.level_cd") == "II"
    assert m.value("OBS.value") == "41"


def test_e4_ack_parses(domain_examples):
    m = parse_message(domain_examples["E4"])
    assert (m.msg_type, m.control_id) == ("ACK.R01", "5002")
    assert m.value("ACK.type_cd") == "AA"
    assert m.value("ACK.ack_control_id") == "10027"


# tolerant view --------------------------------------------------------------------

def test_vendor_spellings_case_and_namespace_are_tolerated():
    m = parse_message(b'<ack.r01 xmlns="urn:x"><HDR><hdr.CONTROL_ID V=" 7 "/></HDR>'
                      b'<ACK><ACK.type_id V="AE"/><ACK.control_id V="42"/></ACK>'
                      b'<OPR><ACC><ACC.permision_level_cd V="4"/></ACC></OPR></ack.r01>')
    assert m.msg_type == "ACK.R01"
    assert m.control_id == "7"
    assert m.value("ACK.type_cd") == "AE"
    assert m.value("ACK.ack_control_id") == "42"
    assert m.value("ACC.permission_level_cd") == "4"
    assert m.version is None and m.value("NOPE") is None and m.unit("NOPE") is None


def test_missing_header_gives_none():
    m = parse_message(b"<DST.R01/>")
    assert m.control_id is None and m.header is None and m.children() == []


# builders -------------------------------------------------------------------------

def test_ack_bytes_exact():
    out = factory(first_control_id=5002).ack("10027")
    assert out.control_id == "5002" and out.msg_type == "ACK.R01"
    assert out.data == (
        b'<?xml version="1.0" encoding="UTF-8"?><ACK.R01><HDR><HDR.control_id V="5002" />'
        b'<HDR.version_id V="POCT1" /><HDR.creation_dttm V="2025-03-14T10:00:00+01:00" /></HDR>'
        b'<ACK><ACK.type_cd V="AA" /><ACK.ack_control_id V="10027" /></ACK></ACK.R01>')


def test_ack_error_text_in_note_and_escaped():
    m = parse_message(factory().ack("9", accepted=False, note='operator "OP9" <unknown> & blocked').data)
    assert m.value("ACK.type_cd") == "AE"
    assert m.value("ACK.note_txt") == 'operator "OP9" <unknown> & blocked'


def test_ack_spelling_is_configurable():
    f = factory(ack_spelling=AckSpelling("ACK.type_id", "ACK.control_id"))
    data = f.ack("3").data
    assert b"ACK.type_id" in data and b"ACK.control_id" in data
    assert parse_message(data).value("ACK.ack_control_id") == "3"


def test_control_ids_increment_per_factory():
    f = factory(first_control_id=100)
    ids = [f.ack("1").control_id, f.operator_list([]).control_id, f.directive(Directive(LOCK)).control_id,
           f.end_of_topic("OPL").control_id, f.terminate().control_id, f.escape("X", "y").control_id]
    assert ids == [str(i) for i in range(100, 106)]
    assert factory().ack("1").control_id == "1"  # a new conversation starts again


def test_operator_list_directive_eot_end():
    f = factory()
    opl = parse_message(f.operator_list([Operator("OP017", "Kari Nordmann", "4", "PIN"),
                                         Operator("OP018")]).data)
    assert opl.msg_type == "OPL.R01"
    ops = opl.children("OPR")
    assert [o.value("OPR.operator_id") for o in ops] == ["OP017", "OP018"]
    assert ops[0].value("OPR.name") == "Kari Nordmann"
    assert [o.value("ACC.permission_level_cd") for o in ops] == ["4", "1"]
    assert ops[0].value("ACC.method_cd") == "PIN" and ops[1].value("ACC.method_cd") is None
    dtv = parse_message(f.directive(Directive(LOCK, (("DTV.target_cd", "CRP"),))).data)
    assert (dtv.value("DTV.command_cd"), dtv.value("DTV.target_cd")) == ("LOCK", "CRP")
    other = MessageFactory(clock=lambda: CLOCK, directive_name="DTV.directive_cd")
    assert parse_message(other.directive(Directive("UNLOCK")).data).value("DTV.directive_cd") == "UNLOCK"
    assert parse_message(f.end_of_topic("OPL").data).value("EOT.topic_cd") == "OPL"
    end = parse_message(f.terminate("ERR", "why").data)
    assert (end.msg_type, end.value("TRM.reason_cd"), end.value("TRM.note_txt")) == ("END.R01", "ERR", "why")
    esc = parse_message(f.escape("CODE", "text", "77").data)
    assert (esc.value("ESC.esc_cd"), esc.value("ESC.note_txt"), esc.value("ESC.ref_control_id")) == \
        ("CODE", "text", "77")


def test_builder_drops_characters_xml_cannot_carry():
    assert xml_safe("a\x00b\x1bc\ud800d\tok") == "abcd\tok"
    m = parse_message(factory().ack("1", accepted=False, note="bad\x00\x07byte").data)
    assert m.value("ACK.note_txt") == "badbyte"


# hostile and broken input ---------------------------------------------------------

HOSTILE = {
    "billion laughs": (BILLION_LAUGHS, XML_DTD_FORBIDDEN),
    "external entity": (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        b"<r>&x;</r>", XML_DTD_FORBIDDEN),
    "external DTD": (b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd"><r/>', XML_DTD_FORBIDDEN),
    "plain DTD": (b"<!DOCTYPE r><r/>", XML_DTD_FORBIDDEN),
    "deeply nested": (b"<a>" * 10_000 + b"</a>" * 10_000, XML_TOO_DEEP),
    "garbage": (b"\x00\xff\xfegarbage\x01", XML_MALFORMED),
    "truncated": (b'<OBS.R01><HDR><HDR.control_id V="1"/></HDR><SVC>', XML_MALFORMED),
    "unclosed attribute": (b'<OBS.R01 a="x></OBS.R01>', XML_MALFORMED),
    "undefined entity": (b"<r>&x;</r>", XML_MALFORMED),
    "empty": (b"", XML_MALFORMED),
    "two roots": (b"<a/><b/>", XML_MALFORMED),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_xml_is_refused_with_a_code(name):
    data, code = HOSTILE[name]
    with pytest.raises(PoctXmlError) as err:
        parse_message(data)
    assert err.value.code == code and err.value.text


def test_twenty_megabytes_refused_before_parsing():
    with pytest.raises(PoctXmlError) as err:
        parse_message(b"<r>" + b"x" * 20_000_000 + b"</r>")
    assert err.value.code == XML_TOO_LARGE


def test_parameter_entity_refused():
    with pytest.raises(PoctXmlError) as err:
        parse_message(b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p">%p;]><r/>')
    assert err.value.code in (XML_DTD_FORBIDDEN, XML_ENTITY_FORBIDDEN)


def test_sniff_control_id_from_broken_bytes():
    assert sniff_control_id(b'<OBS.R01><HDR><HDR.control_id V="10027"/></HDR><SVC></OBS') == "10027"
    assert sniff_control_id(b"garbage") is None
    assert sniff_control_id(b'<HDR.control_id V="  "/>') is None
