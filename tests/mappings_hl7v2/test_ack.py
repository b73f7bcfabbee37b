"""ACK building: AA/AE/AR with ERR segments, readable by the lean parser and by hl7apy."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mappings.hl7v2.ack import build_ack, error_location
from mappings.hl7v2.parser import parse
from mappings.issue import Issue

TS = datetime(2025, 3, 14, 9, 32, 1, tzinfo=timezone(timedelta(hours=1)))
FNR_ISSUE = Issue("error", "FNR-MOD11", "PID-3", "FNR check digits do not match",
                  "Kontrollsiffer i fødselsnummer stemmer ikke")


@pytest.fixture()
def header(e9_bytes):
    return parse(e9_bytes).header()


def test_ae_ack_matches_domain_example_e11(header):
    raw = build_ack(header, "AE", [FNR_ISSUE], control_id="GW-000981", timestamp=TS)
    segments = raw.decode().split("\r")
    assert segments[0] == ("MSH|^~\\&|LABGW|KOMMUNE-XBY^4210000^L|POCDM|LEGEVAKT-XBY^4210001^L|"
                           "20250314093201+0100||ACK^R01^ACK|GW-000981|P|2.5.1||||||UNICODE UTF-8")
    assert segments[1] == "MSA|AE|POC20250314-000123"
    assert segments[2] == ("ERR||PID^1^3|102^Data type error^HL70357|E|FNR-MOD11^FNR check digits "
                           "do not match^L|||Kontrollsiffer i fødselsnummer stemmer ikke")
    assert segments[3] == "" and raw.endswith(b"\r") and not raw.startswith(b"\x0b")


@pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
def test_ack_parses_back_with_lean_parser_and_hl7apy(header, code, hl7apy_reference):
    issues = [FNR_ISSUE, Issue("warning", "SPECIMEN-OLD", "OBX[2]-14", "old | ^ & ~ \\ specimen"),
              Issue("information", "HL7-SEGMENT-NOT-MAPPED", "PV1[1]", "not mapped")]
    raw = build_ack(header, code, issues, control_id="GW-1", timestamp=TS)
    ack = parse(raw)
    assert ack.message_type == "ACK^R01"
    assert ack.get("MSA", 1) == code
    assert ack.get("MSA", 2) == "POC20250314-000123"
    assert ack.get("MSH", 5) == "POCDM"
    assert len(ack.segments_named("ERR")) == 2         # information is not sent
    assert ack.get("ERR", 5, occurrence=1, comp=2) == "old | ^ & ~ \\ specimen"
    assert ack.get("ERR", 2, occurrence=1) == "OBX"
    assert ack.get("ERR", 2, occurrence=1, comp=2) == "2"
    assert ack.get("ERR", 4, occurrence=1) == "W"
    reference = hl7apy_reference.parse(raw.decode())
    assert hl7apy_reference.disagreements(reference, ack) == []
    assert reference.msa.msa_1.to_er7() == code


def test_ack_without_header(hl7apy_reference):
    issue = Issue("error", "HL7-MSH-MISSING", "MSH", "the message does not start with MSH")
    raw = build_ack(None, "AR", [issue], control_id="GW-2", timestamp=TS)
    ack = parse(raw)
    assert ack.get("MSH", 3) == "LABGATE"
    assert ack.get("MSH", 9) == "ACK"
    assert ack.version == "2.5.1"
    assert ack.get("MSA", 1) == "AR" and ack.get("MSA", 2) == ""
    assert ack.get("ERR", 3) == "100"
    hl7apy_reference.parse(raw.decode())


def test_ack_echoes_version_and_processing_id_and_uses_latin1(header):
    header = {**header, "version": "2.3", "processing_id": "T", "receiving_app": "",
              "receiving_facility": ""}
    raw = build_ack(header, "AA", [], control_id="GW-3", timestamp=TS, encoding="latin-1",
                    sending_app="GW", sending_facility="Kommune Ås")
    ack = parse(raw)
    assert (ack.version, ack.get("MSH", 11), ack.get("MSH", 18)) == ("2.3", "T", "8859/1")
    assert (ack.get("MSH", 3), ack.get("MSH", 4)) == ("GW", "Kommune Ås")
    assert ack.encoding == "latin-1" and "Ås".encode("latin-1") in raw


def test_ack_rejects_unknown_code(header):
    with pytest.raises(ValueError):
        build_ack(header, "XX", [], control_id="1", timestamp=TS)


def test_ack_for_a_message_that_failed_to_parse(e9_bytes):
    from mappings.hl7v2.parser import Hl7ParseError
    with pytest.raises(Hl7ParseError) as exc:
        parse(e9_bytes.replace(b"PID|1", b"PID|\x001"))
    raw = build_ack(exc.value.header, "AR", [exc.value.issue], control_id="GW-4", timestamp=TS)
    ack = parse(raw)
    assert ack.get("MSA", 2) == "POC20250314-000123"
    assert ack.get("ERR", 5) == "HL7-CONTROL-CHARACTER"


@pytest.mark.parametrize("location, erl", [
    ("PID-3", ["PID", "1", "3", "", "", ""]),
    ("OBX[2]-5", ["OBX", "2", "5", "", "", ""]),
    ("OBX[2]-5.1", ["OBX", "2", "5", "", "1", ""]),
    ("PV1[1]", ["PV1", "1", "", "", "", ""]),
    ("segment 4", []), ("", []),
])
def test_error_location(location, erl):
    assert error_location(location) == erl
