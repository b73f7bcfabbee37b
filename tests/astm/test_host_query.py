"""Host queries: read Q records, answer from open orders."""
from __future__ import annotations

from datetime import datetime

from adapters.astm.e1394 import build_records, parse_message
from mappings.astm.host_query import answer_records, find_orders, query_from_record
from astm_data import records

NOW = datetime(2025, 3, 14, 10, 8, 5)
OPEN = [
    {"specimen_id": "LID0004712", "patient_id": "41019044120", "tests": ["INR", "CRP"]},
    {"specimen_id": "LID0009999", "patient_id": "13116900216", "tests": ["HbA1c"]},
]


def test_e8_query_is_read():
    q = query_from_record(parse_message(records("E8")).queries[0])
    assert q.specimen_ids == ("LID0004712",) and q.patient_ids == ()
    assert q.tests == () and q.status == "O" and q.sequence == "1"


def test_bare_ids_count_as_specimen_and_patient_ids(corpus):
    m = parse_message((corpus / "astm" / "go-astm-immucor-neo-host-query.astm").read_bytes())
    qs = [query_from_record(q) for q in m.queries]
    assert [q.specimen_ids for q in qs][:2] == [("VALI200301",), ("VALI200302",)]
    strict = query_from_record(m.queries[0], bare_id_is_specimen=False)
    assert strict.specimen_ids == () and strict.patient_ids == ("VALI200301",)


def test_query_for_named_tests_narrows_the_answer():
    m = parse_message(b"H|\\^&\rQ|1|^LID0004712||^^^INR\\^^^GLU\rL|1\r")
    q = query_from_record(m.queries[0])
    assert q.tests == ("INR", "GLU")
    assert find_orders(q, OPEN) == [{**OPEN[0], "tests": ["INR"]}]


def test_query_by_patient_id_finds_that_patients_orders():
    m = parse_message(b"H|\\^&\rQ|1|13116900216^||ALL\rL|1\r")
    assert find_orders(query_from_record(m.queries[0]), OPEN) == [OPEN[1]]


def test_answer_to_e8_has_the_order_with_its_tests():
    q = query_from_record(parse_message(records("E8")).queries[0])
    data = build_records(answer_records([q], OPEN, sender="LABGATE", receiver="INR-POC", now=NOW))
    assert data == (b"H|\\^&|||LABGATE|||||INR-POC||P|1|20250314100805\r"
                    b"P|1|41019044120\r"
                    b"O|1|LID0004712||^^^INR\\^^^CRP|R||||||N||||||||||||||Q\r"
                    b"L|1|N\r")
    answer = parse_message(data)
    order = answer.patients[0].orders[0]
    assert order.record.get(26) == "Q" and order.record.get(12) == "N"
    assert [rep[3] for rep in order.record.repeats(5)] == ["INR", "CRP"]


def test_answer_without_match_says_no_order_on_record():
    m = parse_message(b"H|\\^&\rQ|1|^LID-UNKNOWN||ALL\rL|1\r")
    data = build_records(answer_records([query_from_record(m.queries[0])], OPEN, now=NOW))
    order = parse_message(data).patients[0].orders[0]
    assert order.specimen_id == "LID-UNKNOWN"
    assert order.record.get(26) == "Y" and order.record.get(5) == "ALL"


def test_several_queries_are_answered_in_one_message():
    m = parse_message(b"H|\\^&\rQ|1|^LID0004712||ALL\rQ|2|^LID0009999||ALL\rL|1\r")
    qs = [query_from_record(q) for q in m.queries]
    answer = parse_message(build_records(answer_records(qs, OPEN, now=NOW)))
    assert [p.record.get(3) for p in answer.patients] == ["41019044120", "13116900216"]
    assert answer.terminator is not None
