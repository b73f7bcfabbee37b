"""HL7 v2 escape sequences."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.hl7v2.escape import escape, unescape
from mappings.hl7v2.separators import DEFAULT, Separators

CUSTOM = Separators("^", "~", "|", "\\", "&")     # HAPI's custom-delimiter sample
WITH_TRUNCATION = Separators(truncation="#")


@pytest.mark.parametrize("raw, text", [
    ("a\\F\\b", "a|b"), ("a\\S\\b", "a^b"), ("a\\T\\b", "a&b"), ("a\\R\\b", "a~b"),
    ("a\\E\\b", "a\\b"), ("line1\\.br\\line2", "line1\nline2"), ("\\X41\\", "A"),
    ("\\X0D0A\\", "\r\n"), ("\\XC3B8\\", "ø"), ("plain", "plain"), ("", ""),
    ("\\H\\bold\\N\\", "\\H\\bold\\N\\"),       # FT formatting kept literally
    ("\\Zcustom\\", "\\Zcustom\\"),             # unknown kept
    ("\\XZZ\\", "\\XZZ\\"), ("\\X4\\", "\\X4\\"),  # malformed hex kept
    ("trailing \\", "trailing \\"),             # lone escape char kept
    ("a\\F\\\\S\\b", "a|^b"),
])
def test_unescape(raw, text):
    assert unescape(raw, DEFAULT) == text


def test_escape_all_delimiters():
    assert escape("a|b^c&d~e\\f\ng\rh", DEFAULT) == \
        "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X0D\\h"
    assert escape("", DEFAULT) == ""
    assert escape("plain æøå", DEFAULT) == "plain æøå"


def test_custom_separators():
    assert escape("a^b|c", CUSTOM) == "a\\F\\b\\R\\c"
    assert unescape("a\\F\\b\\R\\c", CUSTOM) == "a^b|c"


def test_truncation_character():
    assert escape("5#", WITH_TRUNCATION) == "5\\P\\"
    assert unescape("5\\P\\", WITH_TRUNCATION) == "5#"


@settings(max_examples=300, deadline=None)
@given(text=st.text(), seps=st.sampled_from([DEFAULT, CUSTOM, WITH_TRUNCATION]))
def test_escape_round_trips(text, seps):
    escaped = escape(text, seps)
    for delimiter in (seps.field, seps.component, seps.repetition, seps.subcomponent, "\r", "\n"):
        assert delimiter not in escaped
    assert unescape(escaped, seps) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_unescape_never_fails(text):
    assert isinstance(unescape(text, DEFAULT), str)


def test_hex_escape_that_is_not_utf8_is_read_as_latin1():
    from mappings.hl7v2.escape import unescape
    from mappings.hl7v2.separators import DEFAULT
    assert unescape("S\\XF8\\rensen", DEFAULT) == "Sørensen"
    assert unescape("\\XC3B8\\", DEFAULT) == "ø"
