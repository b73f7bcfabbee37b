"""Shared helpers for the HL7 v2 mapping tests: corpus location and hl7apy agreement."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
_POSITION = re.compile(r"_(\d+)\Z")


def apy_parse(text: str):
    """hl7apy's reference parse: flat segments, tolerant validation."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message
    return parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)


def _position(name) -> int | None:
    m = _POSITION.search(name or "")
    return int(m.group(1)) if m else None


def disagreements(apy_msg, lean_msg) -> list[str]:
    """Where hl7apy's parse and the lean parse differ, compared as ER7 text.

    hl7apy keeps fields and components at their positions when the message
    follows its data-type definitions; components or fields beyond them it
    keeps unnamed (position lost). Positioned items are compared exactly;
    unnamed ones must appear among the lean parser's values of that field or
    segment.
    """
    out: list[str] = []
    apy_segs = list(apy_msg.children)
    if [s.name for s in apy_segs] != [s.name for s in lean_msg.segments]:
        return [f"segment names differ: {[s.name for s in apy_segs]} != "
                f"{[s.name for s in lean_msg.segments]}"]
    seps = lean_msg.separators
    for n, (a, lean) in enumerate(zip(apy_segs, lean_msg.segments), 1):
        reps_seen: dict[int, int] = {}
        for f in a.children:
            pos = _position(f.name)
            if pos is None:         # a field beyond the definition: position unknown
                if f.to_er7() not in lean.fields and not any(
                        f.to_er7() in lean.repetitions(i) for i in range(1, len(lean.fields))):
                    out.append(f"{a.name}[{n}] extra field {f.to_er7()!r} not in lean parse")
                continue
            rep = reps_seen.get(pos, 0)
            reps_seen[pos] = rep + 1
            lean_reps = lean.repetitions(pos) if not (a.name == "MSH" and pos <= 2) \
                else [lean.field(pos)]
            lean_rep = lean_reps[rep] if rep < len(lean_reps) else None
            _compare_field(f, lean_rep, seps, f"{a.name}[{n}]-{pos}~{rep}", out)
        for pos, count in reps_seen.items():
            if not (a.name == "MSH" and pos <= 2):
                lean_count = len([r for r in lean.repetitions(pos)])
                if count > lean_count:
                    out.append(f"{a.name}[{n}]-{pos}: hl7apy {count} repetitions, lean {lean_count}")
    return out


def _normal(text: str, seps) -> str:
    """ER7 as hl7apy writes it back: trailing spaces and empty trailing parts dropped."""
    comps = [c.rstrip().rstrip(seps.subcomponent) for c in text.split(seps.component)]
    return seps.component.join(comps).rstrip(seps.component)


def same(apy_text: str, lean_text: str, seps) -> bool:
    """Equal as ER7, allowing hl7apy's normalisations: trailing empties and spaces dropped,
    NM '001' written '1', and the escape character in text written as an escape."""
    if apy_text == lean_text or apy_text == _normal(lean_text, seps):
        return True
    esc = seps.escape   # hl7apy writes text types back with the escape char escaped
    unescaped_esc = apy_text.replace(f"{esc}E{esc}", esc)
    if unescaped_esc in (lean_text, _normal(lean_text, seps)):
        return True
    try:
        return Decimal(apy_text) == Decimal(lean_text.strip())
    except (InvalidOperation, ValueError):
        return False


def raw_er7(element, seps) -> str:
    """hl7apy's element rebuilt from the raw leaf values it parsed.

    hl7apy's own ``to_er7`` escapes backslashes of escape sequences it does not
    know (``\\.br\\``); the leaves hold the text exactly as received.
    """
    kind = type(element).__name__
    kids = list(getattr(element, "children", []) or [])
    if kind == "SubComponent" or not kids:
        value = getattr(element, "value", None)
        value = getattr(value, "value", value)
        return "" if value is None else str(value)
    sep = seps.component if kind == "Field" else seps.subcomponent
    placed: dict[int, str] = {}
    extra: list[str] = []
    for k in kids:
        pos = _position(k.name)
        text = raw_er7(k, seps)
        if pos is None and len(kids) == 1:
            pos = 1
        if pos is None:
            extra.append(text)
        else:
            placed[pos] = text
    parts = [placed.get(i, "") for i in range(1, max(placed, default=0) + 1)] + extra
    return sep.join(parts)


def _same_element(element, lean_text: str, seps) -> bool:
    return same(element.to_er7(), lean_text, seps) or same(raw_er7(element, seps), lean_text, seps)


def _compare_field(f, lean_rep, seps, where: str, out: list[str]) -> None:
    if lean_rep is None:
        if f.to_er7():
            out.append(f"{where}: hl7apy {f.to_er7()!r}, lean has no such repetition")
        return
    named = [c for c in f.children if _position(c.name) is not None and c.name != f.name]
    if not named or all(c.name is None for c in f.children):
        if not _same_element(f, lean_rep, seps):
            out.append(f"{where}: hl7apy {f.to_er7()!r} != lean {lean_rep!r}")
        return
    comps = lean_rep.split(seps.component)
    for c in f.children:
        pos = _position(c.name)
        if pos is None:
            if not any(_same_element(c, x, seps) for x in comps):
                out.append(f"{where}: extra component {c.to_er7()!r} not in lean {comps!r}")
        elif pos > len(comps) or not _same_element(c, comps[pos - 1], seps):
            out.append(f"{where}.{pos}: hl7apy {c.to_er7()!r} != lean "
                       f"{comps[pos - 1] if pos <= len(comps) else None!r}")


@pytest.fixture(scope="session")
def e9_bytes() -> bytes:
    return (GOLDEN / "e9.hl7").read_bytes()


@pytest.fixture(scope="session")
def hl7apy_reference():
    """hl7apy's parse and the comparison with the lean parse (see ``disagreements``)."""
    return SimpleNamespace(parse=apy_parse, disagreements=disagreements, same=same)
