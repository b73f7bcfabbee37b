"""HL7 v2 escape sequences (v2.5.1 §2.7): ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\ \\.br\\``.

Unknown or malformed escape sequences (formatting commands of FT such as
``\\H\\``, character-set switches, a lone escape character) are kept literally,
so that unescaping never loses text.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from .separators import Separators


def unescape(text: str, seps: Separators) -> str:
    """Resolve the escape sequences in ``text`` (one field, component or subcomponent)."""
    esc = seps.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        start = text.find(esc, pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find(esc, start + 1)
        if end < 0:                       # lone escape char: keep literally
            out.append(text[start:])
            break
        seq = text[start + 1:end]
        resolved = _resolve(seq, seps)
        if resolved is None:              # unknown: keep the sequence, go on after it
            out.append(text[start:end + 1])
        else:
            out.append(resolved)
        pos = end + 1
    return "".join(out)


def _resolve(seq: str, seps: Separators) -> str | None:
    simple = {"F": seps.field, "S": seps.component, "T": seps.subcomponent,
              "R": seps.repetition, "E": seps.escape, ".br": "\n"}
    if seps.truncation:
        simple["P"] = seps.truncation
    if seq in simple:
        return simple[seq]
    if len(seq) >= 3 and seq[0] == "X" and len(seq) % 2 == 1:
        try:
            raw = bytes.fromhex(seq[1:])
        except ValueError:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:        # e.g. \XF8\ for ø in 8859/1: latin-1 is lossless
            return raw.decode("latin-1")
    return None


def escape(text: str, seps: Separators) -> str:
    """Escape delimiters and line breaks so ``text`` can be one leaf value.

    CR becomes ``\\X0D\\`` and LF ``\\.br\\`` so a value never splits a segment.
    """
    if not text:
        return text
    needs_escape, table = escape_rules(seps)
    # Most values hold no special character; a non-str goes on to translate(),
    # which raises the AttributeError callers have always seen for it.
    if type(text) is str and needs_escape(text) is None:
        return text
    return text.translate(table)


@lru_cache(maxsize=64)
def escape_rules(seps: Separators) -> tuple[Callable[[str], re.Match | None], dict[int, str]]:
    """(search for a character that needs escaping, str.translate table that
    escapes it) for one set of separators, built once per set."""
    e = seps.escape
    specials = {seps.escape: f"{e}E{e}", seps.field: f"{e}F{e}",
                seps.component: f"{e}S{e}", seps.subcomponent: f"{e}T{e}",
                seps.repetition: f"{e}R{e}", "\r": f"{e}X0D{e}", "\n": f"{e}.br{e}"}
    if seps.truncation:
        specials[seps.truncation] = f"{e}P{e}"
    pattern = re.compile("[" + "".join(re.escape(c) for c in specials) + "]")
    return pattern.search, {ord(c): v for c, v in specials.items()}
