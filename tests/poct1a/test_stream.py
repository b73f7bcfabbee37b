"""Splitting a TCP byte stream into POCT1-A messages, and round trips."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from adapters.poct1a.build import Directive, MessageFactory, Operator
from adapters.poct1a.simulator import BILLION_LAUGHS
from adapters.poct1a.stream import StreamSplitter
from adapters.poct1a.xml import (XML_DTD_FORBIDDEN, XML_ENTITY_FORBIDDEN, XML_MALFORMED,
                                 XML_NOT_XML, XML_TOO_DEEP, XML_TOO_LARGE, PoctXmlError,
                                 parse_message)

CLOCK = "2025-03-14T10:00:00+01:00"


def split_all(data: bytes, cuts=(), **kw) -> list[bytes]:
    s = StreamSplitter(**kw)
    out, last = [], 0
    for c in sorted(cuts) + [len(data)]:
        out += s.feed(data[last:c])
        last = c
    return out


def test_back_to_back_with_declarations_and_whitespace(domain_examples):
    stream = b"\r\n".join(domain_examples[k] for k in ("E1", "E2", "E3", "E4"))
    msgs = split_all(b"  \n" + stream + b"\n\n")
    assert [parse_message(m).msg_type for m in msgs] == ["HEL.R01", "OBS.R01", "OBS.R02", "ACK.R01"]
    assert msgs[1] == domain_examples["E2"].strip()


def test_byte_by_byte_feed_gives_same_messages(domain_examples):
    stream = domain_examples["E2"] + domain_examples["E4"]
    s = StreamSplitter()
    out = []
    for i in range(len(stream)):
        out += s.feed(stream[i:i + 1])
    assert out == [domain_examples["E2"].strip(), domain_examples["E4"].strip()]


def test_tricky_content_does_not_fool_the_splitter():
    tricky = (b'<A x=">/A>"><!-- </A> --><![CDATA[</A>]]><A/><?pi </A>?></A >'
              b"<B/>\xef\xbb\xbf<C></C>")
    assert split_all(tricky) == [tricky[:tricky.index(b"<B/>")], b"<B/>", b"\xef\xbb\xbf<C></C>"]


def test_partial_state_and_empty_feeds():
    s = StreamSplitter()
    assert s.feed(b"") == [] and not s.has_partial
    assert s.feed(b"   ") == [] and not s.has_partial
    assert s.feed(b"<A><B/>") == [] and s.has_partial
    assert s.feed(b"</A>") == [b"<A><B/></A>"] and not s.has_partial


@pytest.mark.parametrize("data,code", [
    (b"garbage", XML_NOT_XML),
    (b"<A/>junk", XML_NOT_XML),
    (b"<A></B>", XML_MALFORMED),
    (BILLION_LAUGHS, XML_DTD_FORBIDDEN),
    (b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x"><r/>', XML_DTD_FORBIDDEN),
    (b"<a>" * 1000, XML_TOO_DEEP),
    (b"<A>&ext;</A>", XML_MALFORMED),
])
def test_hostile_streams_fail_with_code(data, code):
    with pytest.raises(PoctXmlError) as err:
        split_all(data)
    assert err.value.code == code


def test_entity_declaration_code_without_doctype_handler():
    s = StreamSplitter()
    with pytest.raises(PoctXmlError) as err:
        s._on_entity("x")  # reached only if a DOCTYPE slipped through; must still refuse
    assert err.value.code == XML_ENTITY_FORBIDDEN


def test_buffer_is_bounded_for_a_never_ending_message():
    s = StreamSplitter(max_bytes=10_000)
    s.feed(b"<A>")
    with pytest.raises(PoctXmlError) as err:
        for _ in range(100):
            s.feed(b"x" * 1000)
    assert err.value.code == XML_TOO_LARGE
    assert s.buffered == 0
    with pytest.raises(PoctXmlError):  # stays failed: the stream cannot be resynchronised
        s.feed(b"<B/>")


def test_twenty_megabytes_refused_at_the_bound():
    s = StreamSplitter(max_bytes=1_000_000)
    with pytest.raises(PoctXmlError) as err:
        s.feed(b"<OBS.R01>" + b"x" * 20_000_000 + b"</OBS.R01>")
    assert err.value.code == XML_TOO_LARGE


def test_complete_but_oversized_message_refused():
    with pytest.raises(PoctXmlError) as err:
        split_all(b"<A>" + b"x" * 200 + b"</A>", max_bytes=100)
    assert err.value.code == XML_TOO_LARGE


def test_failed_head_kept_for_a_reply():
    s = StreamSplitter()
    with pytest.raises(PoctXmlError):
        s.feed(b'<OBS.R01><HDR><HDR.control_id V="77"/></HDR></OBS.R02>')
    assert b'V="77"' in s.failed_head


# property tests -------------------------------------------------------------------

xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n\r"),
                   max_size=40)
operators = st.lists(st.builds(Operator, xml_text, xml_text, xml_text), max_size=4)
messages = st.lists(st.one_of(
    st.tuples(st.just("ACK"), xml_text, st.booleans(), xml_text),
    st.tuples(st.just("OPL"), operators),
    st.tuples(st.just("DTV"), xml_text, xml_text),
), min_size=1, max_size=6)


def build(f: MessageFactory, spec):
    if spec[0] == "ACK":
        return f.ack(spec[1], accepted=spec[2], note=spec[3])
    if spec[0] == "OPL":
        return f.operator_list(spec[1])
    return f.directive(Directive(spec[1], (("DTV.target_cd", spec[2]),)))


def check(spec, msg) -> None:
    if spec[0] == "ACK":
        assert msg.msg_type == "ACK.R01"
        assert msg.value("ACK.ack_control_id") == spec[1]
        assert msg.value("ACK.type_cd") == ("AA" if spec[2] else "AE")
        assert msg.value("ACK.note_txt") == (spec[3] or None)
    elif spec[0] == "OPL":
        got = [(o.value("OPR.operator_id"), o.value("OPR.name") or "", o.value("ACC.permission_level_cd"))
               for o in msg.children("OPR")]
        assert got == [(o.operator_id, o.name, o.permission_level) for o in spec[1]]
    else:
        assert (msg.value("DTV.command_cd"), msg.value("DTV.target_cd")) == (spec[1], spec[2])


@settings(max_examples=60, deadline=None)
@given(messages, st.lists(st.sampled_from([b"", b" ", b"\r\n", b"\n\t "]), min_size=6, max_size=6),
       st.data())
def test_build_split_parse_round_trip_under_any_chunking(specs, gaps, data):
    f = MessageFactory(clock=lambda: CLOCK)
    built = [build(f, s) for s in specs]
    stream = b"".join(gap + out.data for gap, out in zip(gaps, built))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    frames = split_all(stream, cuts)
    assert frames == [o.data for o in built]
    for spec, out, frame in zip(specs, built, frames):
        msg = parse_message(frame)
        assert msg.control_id == out.control_id
        check(spec, msg)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8))
def test_arbitrary_bytes_never_crash_the_splitter(blob, cuts):
    try:
        frames = split_all(blob, [c for c in cuts if c <= len(blob)])
    except PoctXmlError as exc:
        assert exc.code.startswith("POCT1A-XML-")
        return
    for frame in frames:
        try:
            parse_message(frame)
        except PoctXmlError:
            pass
