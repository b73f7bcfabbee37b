"""Frame encoding and checksums (E1381), against DOMAIN.md E5–E8 and the corpus."""
from __future__ import annotations

import pytest

from adapters.astm.frames import (ETB, ETX, STX, checksum, encode_frame, encode_records,
                                  next_frame_number, split_message, split_record)
from astm_data import EXAMPLES, frames, records


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_domain_example_checksums_are_right(name):
    for frame in frames(name):
        end = frame.index(ETX)
        assert frame[-4:-2] == checksum(frame[1:end + 1])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_encoding_the_example_records_gives_the_example_frames(name):
    assert encode_records(split_message(records(name))) == frames(name)


def test_checksum_is_two_uppercase_hex_digits_of_the_sum_mod_256():
    assert checksum(b"1A|B|C|D\r\x03") == b"BF"
    assert checksum(b"\xff\xff") == b"FE"
    assert checksum(b"") == b"00"


def test_frame_numbers_cycle_1_to_7_then_0():
    seq = [1]
    for _ in range(9):
        seq.append(next_frame_number(seq[-1]))
    assert seq == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]


def test_long_record_is_split_into_etb_frames_and_one_etx_frame():
    record = b"R|1|" + b"x" * 600 + b"\r"
    frames_ = encode_records([record], max_text=240)
    assert [f[-5:-4] for f in frames_] == [ETB, ETB, ETX]
    assert [f[1:2] for f in frames_] == [b"1", b"2", b"3"]
    assert b"".join(f[2:-5] for f in frames_) == record
    assert all(len(f) <= 247 for f in frames_)


def test_frame_numbers_continue_across_records_and_wrap():
    frames_ = encode_records([b"L|1\r"] * 9)
    assert [f[1:2] for f in frames_] == [b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"0", b"1"]


def test_split_record_refuses_a_zero_frame_size():
    with pytest.raises(ValueError):
        split_record(b"H\r", 0)


def test_split_message_accepts_cr_lf_and_crlf_and_drops_empty_lines():
    assert split_message(b"H|\\^&\r\nP|1\n\rL|1\r") == [b"H|\\^&\r", b"P|1\r", b"L|1\r"]


def test_corpus_frame_with_checksum_bf(corpus):
    frame = (corpus / "astm" / "lis1-frames" / "python-astm-frame-checksum-BF.txt").read_bytes()
    frame = frame[:frame.index(b"\n") + 1]
    assert frame == encode_frame(1, b"A|B|C|D\r", last=True)


def test_corpus_bad_checksum_frame_really_is_bad(corpus):
    frame = (corpus / "astm" / "invalid" / "python-astm-frame-bad-checksum.txt").read_bytes()
    end = frame.index(ETX)
    assert frame[end + 1:end + 3] == b"00" != checksum(frame[1:end + 1])
    assert frame.startswith(STX)
