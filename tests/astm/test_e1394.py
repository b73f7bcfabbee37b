"""E1394 records and messages: parse, build, escapes, hostile input, round trip."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.astm.e1394 import (AstmMessage, AstmParseError, Delimiters, Order, Patient,
                                 Record, Result, build_message, build_records, parse_message,
                                 parse_messages)
from adapters.astm.records import escape, split_record, universal_test_code
from astm_data import records

D = Delimiters()


# -- the DOMAIN.md examples ---------------------------------------------------

def test_e5_hba1c_tree():
    m = parse_message(records("E5"))
    assert m.delimiters == D and m.problems == []
    assert m.header.get(5) == "HBA1C-POC" and m.header.get(5, 3) == "SN12345678"
    assert m.processing_id == "P"
    (patient,) = m.patients
    assert patient.record.get(3) == "13116900216"
    assert patient.record.components(6) == ["Danser", "Line"]
    (order,) = patient.orders
    assert order.specimen_id == "LID0004711"
    assert order.record.get(8) == "20250314092500"
    assert order.record.components(16) == ["B", "capillary"]
    (result,) = order.results
    assert (result.test_code, result.value, result.units) == ("HbA1c", "53", "mmol/mol")
    assert result.record.get(7) == "H" and result.record.get(13) == "20250314093000"
    assert [c.get(4) for c in result.comments] == ["Reagent lot 1234567 exp 20260131"]
    assert m.terminator.get(3) == "N"


def test_e6_order_without_specimen_id():
    m = parse_message(records("E6"))
    order = m.patients[0].orders[0]
    assert order.specimen_id == "" and order.record.get(8) == "20250314101200"
    assert order.results[0].value == "3.4"


def test_e7_qc_run_has_orders_without_a_patient_record():
    m = parse_message(records("E7"))
    assert m.processing_id == "Q"
    (patient,) = m.patients
    assert patient.record is None
    assert patient.orders[0].record.get(12) == "Q"
    assert build_message(m) == records("E7")


def test_e8_host_query():
    m = parse_message(records("E8"))
    assert m.patients == []
    (q,) = m.queries
    assert q.components(3) == ["", "LID0004712"] and q.get(5) == "ALL" and q.get(13) == "O"


@pytest.mark.parametrize("name", ["E5", "E6", "E7", "E8"])
def test_examples_build_back_byte_for_byte(name):
    assert build_message(parse_message(records(name))) == records(name)


# -- corpus -------------------------------------------------------------------------

def _corpus_files(corpus):
    return sorted((corpus / "astm").glob("*.astm"))


def test_every_corpus_message_parses(corpus):
    for path in _corpus_files(corpus):
        messages = parse_messages(path.read_bytes())
        assert messages, path.name
        for m in messages:
            assert m.header.type == "H"
            assert m.terminator is not None, path.name


def test_corpus_four_messages_in_one_transmission(corpus):
    data = (corpus / "astm" / "go-astm-biorad-ih-four-messages-one-transmission.astm").read_bytes()
    messages = parse_messages(data)
    assert len(messages) == 4
    assert [len(m.patients) for m in messages] == [2, 2, 2, 4]
    with_problem = parse_message(data)
    assert ("ASTM-EXTRA-MESSAGES", "3 further message(s) ignored") in with_problem.problems


def test_corpus_several_patients_and_orders(corpus):
    m = parse_message((corpus / "astm" / "go-astm-euroimmun-analyzer1-sars-cov2-iga.astm").read_bytes())
    assert len(m.patients) == 20
    assert len(list(m.results())) == 20
    m = parse_message((corpus / "astm" / "go-astm-immucor-neo-two-orders-one-patient.astm").read_bytes())
    assert [len(o.results) for o in m.patients[0].orders] == [2, 2]


def test_corpus_manufacturer_records_are_kept(corpus):
    m = parse_message((corpus / "astm" / "twgenaux-ortho-vision-abo-d-with-m-records.astm").read_bytes())
    results = [r for _, _, r in m.results()]
    assert [len(r.other) for r in results] == [3, 2]
    assert all(rec.type == "M" for r in results for rec in r.other)
    assert m.problems == []


def test_corpus_repeats_and_components(corpus):
    m = parse_message((corpus / "astm" / "go-astm-horiba-yumizen-h550-patient-flags.astm").read_bytes())
    comment = m.patients[0].orders[0].comments[0]
    assert len(comment.repeats(4)) == 10
    assert comment.components(4, 2) == ["NON_COMPLIANT_message", "RBC", "RBC_DBL"]


def test_corpus_doubled_backslash_in_the_header_is_tolerated(corpus):
    m = parse_message((corpus / "astm" / "go-astm-horiba-yumizen-h550-qc-result.astm").read_bytes())
    assert m.delimiters == D
    assert m.processing_id == "Q"


def test_corpus_escaped_delimiters_from_an_echo_instrument(corpus):
    m = parse_message((corpus / "astm" / "go-astm-echo-escape-sequences.astm").read_bytes())
    (result,) = [r for _, _, r in m.results()]
    assert result.test_code == "ABOD|Full&Interp"
    assert result.value == "B Pos"


def test_corpus_windows_1252_name_decodes_as_latin_1(corpus):
    m = parse_message((corpus / "astm" / "go-astm-biorad-ih-german-windows1252.astm").read_bytes())
    assert m.patients[0].record.get(6) == "König"


def test_corpus_empty_lines_and_double_cr_are_tolerated(corpus):
    m = parse_message((corpus / "astm" / "go-astm-immucor-neo-query-with-empty-lines.astm").read_bytes())
    assert len(m.queries) == 4
    m = parse_message((corpus / "astm" / "go-astm-double-cr-record-terminators.astm").read_bytes())
    assert len(list(m.results())) == 1 and m.terminator is not None


def test_corpus_missing_terminator_is_a_problem_not_a_crash(corpus):
    m = parse_message((corpus / "astm" / "invalid" / "go-astm-missing-L-terminator.astm").read_bytes())
    assert m.terminator is None
    assert [c for c, _ in m.problems] == ["ASTM-NO-TERMINATOR"]


# -- delimiters and escapes ----------------------------------------------------------

def test_delimiters_declared_in_the_header_are_used():
    text = "H!~#$!!!SENDER#v1\rP!1!ID1!!!Doe#Jane\rR!1!###GLU~###K!5.1\rL!1!N\r"
    m = parse_message(text)
    assert m.delimiters == Delimiters("!", "~", "#", "$")
    assert m.patients[0].record.components(6) == ["Doe", "Jane"]
    r = m.patients[0].orders[0].results[0]
    assert r.record.repeats(3) == [["", "", "", "GLU"], ["", "", "", "K"]]
    assert build_message(m).decode() == text


def test_bare_header_gets_default_delimiters():
    assert Delimiters.from_header("H") == D
    assert Delimiters.from_header("H|") == D
    assert Delimiters.from_header("H|\\") == D
    assert Delimiters.from_header("X|\\^&") == D


def test_unusable_declared_delimiters_fall_back_to_defaults():
    assert Delimiters.from_header("H|ab&") == D
    assert Delimiters.from_header("HA\\^&") == D


def test_invalid_delimiters_are_refused():
    with pytest.raises(ValueError):
        Delimiters("|", "|", "^", "&")
    with pytest.raises(ValueError):
        Delimiters("\r")


@pytest.mark.parametrize("text,expected", [
    ("a&F&b", "a|b"), ("a&S&b", "a^b"), ("a&R&b", "a\\b"), ("a&E&b", "a&b"),
    ("&X41&", "A"), ("&X4142&", "AB"), ("x&H&y", "x&H&y"), ("x&.br&y", "x&.br&y"),
    ("lone&", "lone&"), ("a&|b", "a|b"), ("a&&b", "a&b"), ("&E&&E&", "&&"),
])
def test_escape_sequences(text, expected):
    (field,) = split_record(text, D)
    assert field == [[expected]]


def test_unknown_escape_never_swallows_a_delimiter():
    assert split_record("A&B|C&D", D, lenient=False) == [[["A&B"]], [["C&D"]]]


def test_strict_escapes_leave_escape_before_delimiter_alone():
    assert split_record("a&|b", D, lenient=False) == [[["a&"]], [["b"]]]


def test_escape_then_parse_is_identity():
    text = "a|b\\c^d&e &F& end"
    line = escape(text, D)
    assert split_record(line, D) == [[[text]]]


def test_test_code_takes_the_fourth_component_or_the_first_non_empty():
    assert universal_test_code(["", "", "", "CRP"]) == "CRP"
    assert universal_test_code(["ABO"]) == "ABO"
    assert universal_test_code(["", "", "", "", "X"]) == "X"
    assert universal_test_code([]) == ""


# -- malformed, truncated, oversized, hostile -----------------------------------------

@pytest.mark.parametrize("data", [b"", b"\r\r\n", b"P|1\rL|1\r", b"\x00\xff\x02garbage"])
def test_text_without_a_header_is_a_parse_error(data):
    with pytest.raises(AstmParseError):
        parse_messages(data)


def test_records_before_the_header_are_skipped_with_a_problem():
    m = parse_message(b"junk\rP|1\r" + records("E8"))
    assert ("ASTM-RECORD-BEFORE-HEADER", "2 record(s) before the H record ignored") in m.problems
    assert len(m.queries) == 1


def test_truncated_message_keeps_what_it_has():
    data = records("E5")
    m = parse_message(data[:data.index(b"R|1")])
    assert m.terminator is None and len(m.patients[0].orders) == 1
    assert ("ASTM-NO-TERMINATOR", "message has no L (terminator) record") in m.problems


def test_result_without_order_and_unknown_records_are_problems():
    m = parse_message(b"H|\\^&\rR|1|^^^CRP|5\rZ|1|x\rL|1\r")
    codes = [c for c, _ in m.problems]
    assert codes == ["ASTM-RESULT-WITHOUT-ORDER", "ASTM-UNKNOWN-RECORD"]
    assert m.patients[0].orders[0].record is None
    assert m.patients[0].orders[0].results[0].other[0].type == "Z"


def test_problem_texts_never_quote_field_content():
    m = parse_message(b"H|\\^&\rR|1|^^^CRP|13116900216\rQ13116900216|x\rL|1\r")
    assert all("13116900216" not in text for _, text in m.problems)


def test_oversized_message_parses_in_reasonable_shape():
    body = b"".join(b"R|%d|^^^CRP|%d|mg/L\r" % (i, i) for i in range(20000))
    m = parse_message(b"H|\\^&\rP|1|X\rO|1|S1\r" + body + b"L|1|N\r")
    assert len(m.patients[0].orders[0].results) == 20000


def test_huge_single_field_and_many_escapes():
    m = parse_message(b"H|\\^&\rC|1|I|" + b"&F&" * 50000 + b"\rL|1\r")
    assert m.comments[0].get(4) == "|" * 50000


def test_hostile_bytes_never_raise_anything_but_parse_error():
    import random
    rng = random.Random(7)
    for _ in range(300):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        try:
            parse_messages(b"H|\\^&\r" + blob if rng.random() < 0.5 else blob)
        except AstmParseError:
            pass


def test_building_refuses_control_characters_in_values():
    with pytest.raises(ValueError):
        build_records([["P", "1", "ID\rL|1"]])
    with pytest.raises(ValueError):
        build_records([["C", "1", "I", "text\x04"]])


def test_record_accessors_out_of_range_are_empty():
    r = Record.from_values(["O", "1", ["a", "b"]])
    assert r.get(0) == "" and r.get(99) == "" and r.get(3, 5) == "" and r.get(3, 1, 2) == ""
    assert r.components(99) == [] and r.repeats(-1) == []
    assert Record().type == ""


def test_from_values_shapes():
    r = Record.from_values(["R", "1", ["", "", "", "CRP"], [["a", "b"], ["c"]], [], "x"])
    assert r.fields == [[["R"]], [["1"]], [["", "", "", "CRP"]], [["a", "b"], ["c"]],
                        [[""]], [["x"]]]
    assert build_records([r]) == b"R|1|^^^CRP|a^b\\c||x\r"


# -- round trip ------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n\x02\x03\x04\x05\x06\x15\x17",
                                      blacklist_categories=("Cs",), max_codepoint=0xFF),
               max_size=12)
COMPONENTS = st.lists(TEXT, min_size=1, max_size=3)
FIELD = st.lists(COMPONENTS, min_size=1, max_size=3)


def record(kind: str):
    return st.lists(FIELD, min_size=1, max_size=5).map(lambda fs: Record([[[kind]]] + fs))


@st.composite
def messages(draw):
    header = Record([[["H"]], [["\\^&"]]] + draw(st.lists(FIELD, max_size=8)))
    patients = []
    for _ in range(draw(st.integers(0, 2))):
        orders = []
        for _ in range(draw(st.integers(0, 2))):
            results = [Result(draw(record("R")), comments=draw(st.lists(record("C"), max_size=2)),
                              other=draw(st.lists(record("M"), max_size=1)))
                       for _ in range(draw(st.integers(0, 2)))]
            orders.append(Order(draw(record("O")), results,
                                comments=draw(st.lists(record("C"), max_size=1))))
        patients.append(Patient(draw(record("P")), orders))
    queries = draw(st.lists(record("Q"), max_size=2))
    return AstmMessage(header=header, patients=patients, queries=queries,
                       terminator=draw(record("L")))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=messages())
def test_build_then_parse_gives_the_same_tree(msg):
    data = build_message(msg)
    back = parse_message(data)
    assert back.patients == msg.patients
    assert back.queries == msg.queries
    assert back.terminator == msg.terminator
    assert back.header.fields[2:] == msg.header.fields[2:]
    assert build_message(back) == data
