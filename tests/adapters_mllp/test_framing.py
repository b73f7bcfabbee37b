"""MllpFramer and frame(): plain bytes in, messages out, no sockets."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mllp import END_BLOCK, START_BLOCK, MllpFrameTooLarge, MllpFramer, frame

MSG = b"MSH|^~\\&|LAB|X|GW|Y|20240101120000||ORU^R01|1|P|2.5.1\rPID|1||12345\r"


def feed_all(framer: MllpFramer, chunks) -> tuple[list[bytes], int]:
    """Feed every chunk, collecting messages across oversize errors; return (messages, oversize)."""
    messages, oversize = [], 0
    for chunk in [*chunks, b""]:
        while True:
            try:
                messages += framer.feed(chunk)
                break
            except MllpFrameTooLarge as exc:
                messages += exc.messages
                oversize += 1
                chunk = b""  # the framer kept the rest of the chunk
    return messages, oversize


def counters(framer: MllpFramer) -> tuple[int, int, int]:
    return framer.skipped_bytes, framer.discarded_bytes, framer.framing_anomalies


def test_frame_wraps_in_vt_and_fs_cr():
    assert START_BLOCK == b"\x0b" and END_BLOCK == b"\x1c\x0d"
    assert frame(b"abc") == b"\x0babc\x1c\x0d"
    assert frame(b"") == b"\x0b\x1c\x0d"


def test_one_message_round_trips():
    framer = MllpFramer()
    assert framer.feed(frame(MSG)) == [MSG]
    assert counters(framer) == (0, 0, 0)
    assert not framer.in_block


def test_several_messages_in_one_chunk():
    framer = MllpFramer()
    assert framer.feed(frame(b"a") + frame(b"bb") + frame(b"ccc")) == [b"a", b"bb", b"ccc"]


def test_every_split_point_of_two_messages():
    stream = frame(MSG) + frame(b"second")
    for cut in range(len(stream) + 1):
        framer = MllpFramer()
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == [MSG, b"second"], cut
        assert counters(framer) == (0, 0, 0), cut


def test_one_byte_at_a_time():
    framer = MllpFramer()
    got = []
    for byte in frame(MSG) + frame(b"x"):
        got += framer.feed(bytes([byte]))
    assert got == [MSG, b"x"]


def test_partial_block_is_buffered():
    framer = MllpFramer()
    assert framer.feed(b"\x0bMSH|") == []
    assert framer.in_block and framer.buffered_bytes == 4
    assert framer.feed(b"rest\x1c\r") == [b"MSH|rest"]


def test_empty_feed_and_empty_message():
    framer = MllpFramer()
    assert framer.feed(b"") == []
    assert framer.feed(frame(b"")) == [b""]


def test_junk_before_and_between_blocks_is_skipped_and_counted():
    framer = MllpFramer()
    got = framer.feed(b"\r\nhello" + frame(b"a") + b"\x00\x1c\xff" + frame(b"b") + b"tail")
    assert got == [b"a", b"b"]
    assert framer.skipped_bytes == 7 + 3 + 4
    assert framer.framing_anomalies == 0


def test_fs_without_cr_ends_the_block_and_counts_an_anomaly():
    framer = MllpFramer()
    assert framer.feed(b"\x0ba\x1c\x0bb\x1c\r") == [b"a", b"b"]
    assert framer.framing_anomalies == 1
    assert framer.skipped_bytes == 0


def test_message_is_handed_out_at_fs_without_waiting_for_cr():
    framer = MllpFramer()
    assert framer.feed(b"\x0ba\x1c") == [b"a"]   # a sender waiting for its ACK is answered
    assert framer.feed(b"\r") == []              # the late CR is the block's own
    assert counters(framer) == (0, 0, 0)
    assert framer.feed(b"\x0bb\x1c") == [b"b"]
    assert framer.feed(b"\x0bc\x1c\r") == [b"c"]  # no CR after b: anomaly
    assert framer.framing_anomalies == 1


def test_vt_inside_an_open_block_starts_over():
    framer = MllpFramer()
    assert framer.feed(b"\x0bhalf a mess") == []
    assert framer.feed(b"age\x0bwhole\x1c\r") == [b"whole"]
    assert framer.skipped_bytes == len(b"half a message")
    assert framer.framing_anomalies == 1


def test_message_of_exactly_the_limit_passes():
    framer = MllpFramer(max_message_bytes=10)
    assert framer.feed(frame(b"x" * 10)) == [b"x" * 10]
    framer = MllpFramer(max_message_bytes=10)
    assert framer.feed(b"\x0b" + b"x" * 10) == []
    assert framer.feed(b"\x1c\r") == [b"x" * 10]


def test_oversize_raises_then_discards_up_to_next_vt():
    framer = MllpFramer(max_message_bytes=10)
    assert framer.feed(b"\x0b" + b"x" * 8) == []
    with pytest.raises(MllpFrameTooLarge) as caught:
        framer.feed(b"yyyy")
    assert caught.value.limit == 10 and caught.value.messages == []
    assert not framer.in_block
    assert framer.feed(b"zzz\x1c\rjunk") == []    # rest of the big block: discarded
    assert framer.feed(b"\x0bok\x1c\r") == [b"ok"]
    assert framer.skipped_bytes == 0
    assert framer.discarded_bytes == 8 + 4 + 3 + 2 + 4


def test_oversize_keeps_earlier_messages_and_the_rest_of_the_chunk():
    framer = MllpFramer(max_message_bytes=5)
    chunk = frame(b"one") + frame(b"far too long") + frame(b"two") + b"\x0bthr"
    with pytest.raises(MllpFrameTooLarge) as caught:
        framer.feed(chunk)
    assert caught.value.messages == [b"one"]
    assert framer.feed(b"ee\x1c\r") == [b"two", b"three"]


def test_oversize_complete_block_in_one_chunk():
    framer = MllpFramer(max_message_bytes=3)
    with pytest.raises(MllpFrameTooLarge):
        framer.feed(frame(b"abcd"))
    assert framer.feed(b"") == []
    assert framer.discarded_bytes == 4 + 2


def test_hostile_huge_stream_without_fs_is_bounded():
    framer = MllpFramer(max_message_bytes=1000)
    framer.feed(b"\x0b")
    with pytest.raises(MllpFrameTooLarge):
        for _ in range(100):
            framer.feed(b"A" * 600)
    assert framer.buffered_bytes == 0
    framer.feed(b"A" * 100_000)  # still discarding: nothing is held
    assert framer.buffered_bytes == 0 and framer.discarded_bytes == 101_200


def test_restarting_blocks_never_hold_more_than_one_block():
    framer = MllpFramer(max_message_bytes=1000)
    for _ in range(100):
        assert framer.feed(b"\x0b" + b"A" * 600) == []
        assert framer.buffered_bytes == 600
    assert framer.framing_anomalies == 99


def test_invalid_limit_is_refused():
    with pytest.raises(ValueError):
        MllpFramer(max_message_bytes=0)


# ---- properties -------------------------------------------------------------

_content = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
_junk = st.binary(max_size=20).map(lambda b: b.replace(b"\x0b", b""))


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_junk, _content), max_size=12), _junk,
       st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_yields_exactly_the_framed_messages(pairs, trailing, cuts):
    stream = b"".join(junk + frame(m) for junk, m in pairs) + trailing
    framer = MllpFramer()
    messages, oversize = feed_all(framer, _chunked(stream, cuts))
    assert messages == [m for _, m in pairs]
    assert oversize == 0
    assert framer.skipped_bytes == sum(len(j) for j, _ in pairs) + len(trailing)
    assert framer.framing_anomalies == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0), max_size=40),
       st.integers(min_value=1, max_value=64))
def test_random_bytes_only_ever_raise_too_large_and_chunking_never_matters(data, cuts, limit):
    whole = MllpFramer(max_message_bytes=limit)
    expected = feed_all(whole, [data])
    chunked = MllpFramer(max_message_bytes=limit)
    assert feed_all(chunked, _chunked(data, cuts)) == expected
    assert counters(chunked) == counters(whole)
    for message in expected[0]:
        assert len(message) <= limit
        assert b"\x0b" not in message and b"\x1c" not in message


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\x0b", b"\x1c", b"\r", b"A", b"\x0bAB\x1c\r", b"\x1c\r"]),
                max_size=60),
       st.lists(st.integers(min_value=0), max_size=20))
def test_control_byte_soup_never_crashes(pieces, cuts):
    data = b"".join(pieces)
    whole = MllpFramer(max_message_bytes=4)
    expected = feed_all(whole, [data])
    chunked = MllpFramer(max_message_bytes=4)
    assert feed_all(chunked, _chunked(data, cuts)) == expected
    assert counters(chunked) == counters(whole)
