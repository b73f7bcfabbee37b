"""Hypothesis-driven fuzzing of every untrusted entry point (targets.py):
random bytes and mutations of real messages (seeds.py). No input may make a
target raise anything but its documented refusal. Bounded: FUZZ_EXAMPLES
examples per target (default 150)."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seeds import seeds
from targets import TARGETS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw, pool: list[bytes]) -> bytes:
    """A seed with a few byte-level edits: flip, insert, delete, duplicate, truncate."""
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "cut"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16)
                                 | st.sampled_from([b"|", b"^", b"\r", b"\\", b"&", b"~", b"<", b">",
                                                    b'"', b"{", b"[", b"\x02", b"\x03", b"\x04", b"\x05"]))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 32))]
        elif op == "dup":
            end = min(len(data), pos + draw(st.integers(1, 200)))
            data[pos:pos] = data[pos:end] * draw(st.integers(1, 20))
        elif op == "cut":
            del data[pos:]
    return bytes(data)


def _fuzz(name: str):
    pool = seeds(name)

    @_SETTINGS
    @given(st.one_of(st.binary(max_size=2048), mutated(pool)))
    def run(data):
        TARGETS[name](data)
    return run


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_never_crashes(name):
    _fuzz(name)()
