"""The chaos verdicts are only as good as their counting: the order check
must flag a real violation and accept concurrent messages in any order, and
the benchmark's person numbers must be valid (checked by python-stdnum, not
by our own identifier code)."""
from __future__ import annotations

from stdnum.no import fodselsnummer

from bench.chaos import order_violations
from bench.messages import oru_r01, person


def test_order_check_flags_a_message_delivered_before_one_acked_earlier():
    # A acked at t=2; B first sent at t=3 (after A's ACK) — B must come after A.
    timeline = {"A": (1.0, 2.0), "B": (3.0, 4.0)}
    assert order_violations(["A", "B"], timeline) == 0
    assert order_violations(["B", "A"], timeline) == 1


def test_order_check_allows_concurrent_messages_either_way():
    # A and B in flight at the same time: neither was acked before the other was sent.
    timeline = {"A": (1.0, 3.0), "B": (2.0, 4.0)}
    assert order_violations(["A", "B"], timeline) == 0
    assert order_violations(["B", "A"], timeline) == 0


def test_order_check_counts_every_late_message():
    timeline = {c: (float(i), float(i) + 0.5) for i, c in enumerate("ABCD")}
    assert order_violations(["D", "C", "B", "A"], timeline) == 3


def test_benchmark_person_numbers_are_valid_fodselsnummer():
    for i in range(2000):
        number, birth, sex = person(i)
        assert fodselsnummer.is_valid(number), number
        assert fodselsnummer.get_birth_date(number).strftime("%Y%m%d") == birth
        assert fodselsnummer.get_gender(number) == ("M" if sex == "M" else "F")


def test_benchmark_message_has_eleven_segments_and_its_control_id():
    msg = oru_r01("CTRL-7", 7)
    segments = msg.decode().strip("\r").split("\r")
    assert [s[:3] for s in segments] == ["MSH", "PID", "PV1", "ORC", "OBR", "OBX", "OBX", "OBX", "OBX",
                                         "NTE", "SPM"]
    assert segments[0].split("|")[9] == "CTRL-7"
