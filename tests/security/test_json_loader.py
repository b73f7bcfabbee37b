"""gateway.security.load_json: size, depth and syntax limits on untrusted JSON."""
from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.security import JsonLimitError, load_json
from gateway.security.jsonsafe import depth_exceeds


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def test_accepts_a_fhir_resource():
    body = b'{"resourceType": "Patient", "name": [{"family": "Danser", "given": ["Line"]}]}'
    assert load_json(body)["name"][0]["given"] == ["Line"]


@pytest.mark.parametrize("depth, ok", [(1, True), (64, True), (65, False), (100_000, False)])
def test_depth_limit(depth, ok):
    body = nested(depth)
    if ok:
        load_json(body, max_depth=64)
    else:
        with pytest.raises(JsonLimitError) as e:
            load_json(body, max_depth=64)
        assert e.value.code == "JSON-TOO-DEEP"


def test_depth_counts_objects_and_arrays_alike():
    body = b'{"a": [{"b": [{"c": 1}]}]}'   # depth 5
    assert load_json(body, max_depth=5)
    with pytest.raises(JsonLimitError, match="deeper than 4"):
        load_json(body, max_depth=4)


def test_size_limit_is_checked_before_parsing():
    with pytest.raises(JsonLimitError) as e:
        load_json(b"[" + b"1," * 600 + b"1]", max_bytes=1000)
    assert e.value.code == "JSON-TOO-LARGE"


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": }', b"\xff\xfe{}", b"[1, 2", b"NaN",
                                  b'{"a": 1} trailing', b'"\xed\xa0\x80"'])
def test_invalid_json(body):
    with pytest.raises(JsonLimitError) as e:
        load_json(body)
    assert e.value.code == "JSON-INVALID"


def test_error_is_a_value_error_with_a_clear_message():
    with pytest.raises(ValueError, match="not valid JSON"):
        load_json(b"{oops")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


def _depth(v) -> int:
    if isinstance(v, dict):
        return 1 + max(map(_depth, v.values()), default=0)
    if isinstance(v, list):
        return 1 + max(map(_depth, v), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(1, 8))
def test_round_trip_and_depth_agree_with_a_recursive_count(value, limit):
    body = orjson.dumps(value)
    assert depth_exceeds(value, limit) == (_depth(value) > limit)
    if _depth(value) <= limit:
        assert load_json(body, max_depth=limit) == value
    else:
        with pytest.raises(JsonLimitError):
            load_json(body, max_depth=limit)
