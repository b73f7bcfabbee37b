"""The lean parser on the corpus and on malformed, truncated, oversized and hostile input."""
from __future__ import annotations

from pathlib import Path

import pytest

from mappings.hl7v2.parser import Hl7ParseError, parse
from mappings.hl7v2.separators import Separators
from support import HL7V2_CORPUS as CORPUS
from support import hl7v2_corpus_file


def corpus_files(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).glob("*.hl7"))


E9_MSH = (b"MSH|^~\\&|POCDM|LEGEVAKT-XBY^4210001^L|LABGW|KOMMUNE-XBY^4210000^L|"
          b"20250314093200+0100||ORU^R01^ORU_R01|POC20250314-000123|P|2.5.1|||AL|NE||UNICODE UTF-8")


def _msg(*segments: bytes, msh: bytes = E9_MSH) -> bytes:
    return b"\r".join((msh, *segments)) + b"\r"


@pytest.mark.parametrize("path", corpus_files("valid"), ids=lambda p: p.name)
def test_every_valid_corpus_message_parses(path):
    msg = parse(path.read_bytes())
    assert msg.segments[0].name == "MSH"
    assert msg.header()["message_code"]
    assert all(len(s.name) == 3 for s in msg.segments)


@pytest.mark.parametrize("path", corpus_files("invalid"), ids=lambda p: p.name)
def test_invalid_corpus_message_parses_or_raises_a_clear_issue(path):
    try:
        msg = parse(path.read_bytes())
    except Hl7ParseError as e:
        assert e.issue.severity == "error"
        assert e.issue.code.startswith("HL7-")
        assert e.issue.text
    else:
        assert msg.segments[0].name == "MSH"


@pytest.mark.parametrize("name, code", [
    ("hl7apy-first-segment-not-msh.hl7", "HL7-MSH-MISSING"),
    ("hl7apy-msh-duplicate-encoding-chars.hl7", "HL7-DELIMITERS"),
    ("hl7apy-msh-empty-encoding-chars.hl7", "HL7-DELIMITERS"),
    ("hl7apy-msh-three-encoding-chars-v27.hl7", "HL7-DELIMITERS"),
    ("hl7apy-msh-too-many-encoding-chars.hl7", "HL7-DELIMITERS"),
    ("hl7apy-msh9-message-type-missing.hl7", "HL7-MSH-9-MISSING"),
    ("lfh-adt-a01-msh2-double-backslash.hl7", "HL7-DELIMITERS"),
    ("python-hl7-batch-nested-bhs.hl7", "HL7-MSH-MISSING"),
    ("python-hl7-batch-without-msh.hl7", "HL7-MSH-MISSING"),
])
def test_invalid_corpus_codes(name, code):
    with pytest.raises(Hl7ParseError) as exc:
        parse(hl7v2_corpus_file("invalid", name))
    assert exc.value.issue.code == code


def test_msh9_missing_still_gives_the_header_for_the_nack():
    with pytest.raises(Hl7ParseError) as exc:
        parse(hl7v2_corpus_file("invalid", "hl7apy-msh9-message-type-missing.hl7"))
    assert exc.value.header["control_id"] == "0123456789"
    assert exc.value.header["sending_app"] == "SEND APP"


def test_fields_follow_standard_numbering(e9_bytes):
    msg = parse(e9_bytes)
    assert msg.get("MSH", 1) == "|"
    assert msg.get("MSH", 2) == "^~\\&"
    assert msg.get("MSH", 4, comp=2) == "4210001"
    assert msg.control_id == "POC20250314-000123"
    assert msg.message_type == "ORU^R01"
    assert msg.version == "2.5.1"
    assert msg.encoding == "utf-8"
    assert msg.get("PID", 3, comp=4, sub=2) == "2.16.578.1.12.4.1.4.1"
    assert msg.get("OBX", 5, occurrence=1) == "11.2"
    assert msg.get("OBX", 5, occurrence=7) == ""
    assert msg.get("OBX", 99) == ""
    assert msg.get("ZZZ", 1) == ""


def test_header_keys(e9_bytes):
    h = parse(e9_bytes).header()
    assert h == {
        "control_id": "POC20250314-000123", "message_type": "ORU^R01", "message_code": "ORU",
        "trigger": "R01", "structure": "ORU_R01", "version": "2.5.1", "sending_app": "POCDM",
        "sending_facility": "LEGEVAKT-XBY^4210001^L", "receiving_app": "LABGW",
        "receiving_facility": "KOMMUNE-XBY^4210000^L", "processing_id": "P",
        "accept_ack_type": "AL", "app_ack_type": "NE", "charset": "UNICODE UTF-8",
        "timestamp": "20250314093200+0100"}


def test_repetitions_components_and_escapes_are_split_lazily():
    msg = parse(_msg(b"PID|1||A\\F\\B^^^X&1.2&ISO~C\\S\\D^^^Y||Fam\\T\\ily^Gi\\E\\ven"))
    pid = msg.segments[1]
    assert pid.fields[3] == "A\\F\\B^^^X&1.2&ISO~C\\S\\D^^^Y"      # raw, still escaped
    assert pid.repetitions(3) == ["A\\F\\B^^^X&1.2&ISO", "C\\S\\D^^^Y"]
    assert pid.value(3) == "A|B"
    assert pid.value(3, rep=1) == "C^D"
    assert pid.subcomponents(3, 0, 4) == ["X", "1.2", "ISO"]
    assert pid.value(5) == "Fam&ily"
    assert pid.value(5, comp=2) == "Gi\\ven"
    assert pid.value(3, rep=2) == ""


def test_custom_delimiters_are_honoured():
    msg = parse(hl7v2_corpus_file("valid", "hapi-adt-a24-custom-delimiters.hl7"))
    assert msg.separators == Separators("^", "~", "|", "\\", "&")
    assert msg.message_type == "ADT^A24"
    assert msg.get("MSH", 9, comp=2) == "A24"


def test_truncation_character_is_accepted():
    msg = parse(hl7v2_corpus_file("valid", "cdc-rs-oru-r01-elims-minimal.hl7"))
    assert msg.separators.truncation == "#"
    assert msg.get("MSH", 2) == "^~\\&#"


# ------------------------------------------------------------------ hostile input

@pytest.mark.parametrize("raw, code", [
    (b"", "HL7-EMPTY"),
    (b"\r\n \x0b\x1c\r", "HL7-EMPTY"),
    (b"PID|1||123\r", "HL7-MSH-MISSING"),
    (b"\x00\xff\xfe garbage \x89PNG\r\n", "HL7-MSH-MISSING"),
    (b"MSH", "HL7-DELIMITERS"),
    (b"MSH|", "HL7-DELIMITERS"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1\r", "HL7-MSH-TOO-SHORT"),
    (b"MSHA^~\\&|A\r", "HL7-DELIMITERS"),                 # letter as field separator
    (b"MSH ^~\\&|A\r", "HL7-DELIMITERS"),                 # space as field separator
    (b"MSH|^~\\|A\r", "HL7-DELIMITERS"),                  # three encoding characters
    (b"MSH|^^\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\r", "HL7-DELIMITERS"),
    (b"MSH|^~|&|A|B|C|D|20250101||ORU^R01|1|P|2.5\r", "HL7-DELIMITERS"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|\r", "HL7-MSH-12-MISSING"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\rPID|1\x00|x\r", "HL7-CONTROL-CHARACTER"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\rPID|1|\x07\r", "HL7-CONTROL-CHARACTER"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\rpid|1\r", "HL7-SEGMENT-NAME"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\rPIDX|1\r", "HL7-SEGMENT-NAME"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\r\xff\xfe\xfd\r", "HL7-SEGMENT-NAME"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\rMSH|^~\\&|A|B\r", "HL7-MULTIPLE-MESSAGES"),
    (b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5||||||UTF-16\r", "HL7-ENCODING"),
])
def test_hostile_input_raises_parse_error(raw, code):
    with pytest.raises(Hl7ParseError) as exc:
        parse(raw)
    assert exc.value.issue.code == code
    assert exc.value.issue.rejects


def test_parse_rejects_text():
    with pytest.raises(TypeError):
        parse("MSH|^~\\&|")   # type: ignore[arg-type]


def test_truncated_message_still_parses_what_is_there(e9_bytes):
    cut = e9_bytes[: e9_bytes.index(b"OBX|2") + 14]
    msg = parse(cut)
    assert msg.segments[-1].name == "OBX"
    assert msg.segments[-1].value(3) == "NOR05"


def test_nul_byte_error_carries_the_header():
    with pytest.raises(Hl7ParseError) as exc:
        parse(_msg(b"PID|1||\x00"))
    assert exc.value.header["control_id"] == "POC20250314-000123"


@pytest.mark.parametrize("sep", [b"\n", b"\r\n"])
def test_lf_and_crlf_segment_separators(e9_bytes, sep):
    raw = e9_bytes.replace(b"\r", sep)
    msg = parse(raw)
    assert [s.name for s in msg.segments] == [s.name for s in parse(e9_bytes).segments]
    assert msg.get("OBX", 5, occurrence=1) == "11.2"
    assert all("\n" not in f for s in msg.segments for f in s.fields)
    if sep == b"\n":
        assert [i.code for i in msg.issues] == ["HL7-SEGMENT-SEPARATOR"]


def test_bom_and_mllp_leftovers_are_stripped(e9_bytes):
    msg = parse(b"\x0b\xef\xbb\xbf" + e9_bytes + b"\x1c\r")
    assert msg.control_id == "POC20250314-000123"


def test_invalid_utf8_with_msh18_utf8_is_an_encoding_error():
    with pytest.raises(Hl7ParseError) as exc:
        parse(_msg(b"PID|1||1||S\xf8rensen^P\xe5l"))
    assert exc.value.issue.code == "HL7-ENCODING"
    assert exc.value.header["control_id"] == "POC20250314-000123"


def test_latin1_with_msh18_8859_1_keeps_norwegian_letters():
    msh = b"MSH|^~\\&|A|B|C|D|20250314||ORU^R01|7|P|2.5.1|||||NOR|8859/1"
    msg = parse(_msg(b"PID|1||1||S\xf8rensen^P\xe5l \xc6rlig", msh=msh))
    assert msg.encoding == "latin-1"
    assert msg.get("PID", 5) == "Sørensen"
    assert msg.get("PID", 5, comp=2) == "Pål Ærlig"


def test_undeclared_charset_is_sniffed():
    msh = b"MSH|^~\\&|A|B|C|D|20250314||ORU^R01|7|P|2.5.1"
    assert parse(_msg(b"PID|1||1||As", msh=msh)).encoding == "ascii"
    assert parse(_msg("PID|1||1||Øs".encode(), msh=msh)).encoding == "utf-8"
    latin = parse(_msg("PID|1||1||Øs".encode("latin-1"), msh=msh))
    assert (latin.encoding, latin.get("PID", 5)) == ("latin-1", "Øs")


def test_ten_megabyte_message_parses():
    big = b"A" * (10 * 1024 * 1024)
    msg = parse(_msg(b"PID|1||1", b"OBR|1", b"OBX|1|ED|PDF^Report^L||^AP^PDF^Base64^" + big))
    assert len(msg.get("OBX", 5, comp=5)) == len(big)


def test_too_many_segments_raises():
    raw = _msg(*([b"NTE|1||x"] * 5001))
    with pytest.raises(Hl7ParseError) as exc:
        parse(raw)
    assert exc.value.issue.code == "HL7-TOO-MANY-SEGMENTS"
    assert parse(raw, max_segments=6000).segments[-1].name == "NTE"


def test_too_many_repetitions_raises():
    raw = _msg(b"PID|1||" + b"~".join([b"1"] * 1001))
    with pytest.raises(Hl7ParseError) as exc:
        parse(raw)
    assert exc.value.issue.code == "HL7-TOO-MANY-REPETITIONS"
    assert exc.value.issue.location == "PID-3"
    assert len(parse(raw, max_repetitions=2000).segments[1].repetitions(3)) == 1001


def test_many_repetitions_spread_over_fields_are_fine():
    fields = b"|".join([b"~".join([b"x"] * 500)] * 4)
    assert len(parse(_msg(b"PID|" + fields)).segments[1].repetitions(2)) == 500


def test_empty_segments_between_are_skipped(e9_bytes):
    msg = parse(e9_bytes.replace(b"\rPID", b"\r\r\rPID"))
    assert [s.name for s in msg.segments][:2] == ["MSH", "PID"]
