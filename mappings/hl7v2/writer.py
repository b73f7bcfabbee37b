"""Lean ER7 writing: escaped leaves joined with the standard delimiters."""
from __future__ import annotations

import codecs
from datetime import datetime
from functools import lru_cache

from .escape import escape_rules
from .separators import DEFAULT
from .timestamps import v2_now

_SEPS = DEFAULT
_NEEDS_ESCAPE, _ESCAPE_TABLE = escape_rules(DEFAULT)


def component(parts: list) -> str:
    """Components, each a str or a list of subcomponent strs, unescaped in, escaped out.

    ``parts`` is read twice, so it is a list (or tuple), not an iterator."""
    try:
        text = "".join(parts)
    except TypeError:       # a subcomponent list, None or a non-str among the parts
        return _component_by_part(parts)
    # The common case: all parts are plain strs, and none holds a special character.
    if _NEEDS_ESCAPE(text) is None:
        return "^".join(parts).rstrip("^")
    return _component_by_part(parts)


def _component_by_part(parts: list) -> str:
    return "^".join([_subcomponents(p) if isinstance(p, list) else _leaf(p)
                     for p in parts]).rstrip("^")


def _subcomponents(parts: list) -> str:
    return "&".join([_leaf(s) for s in parts]).rstrip("&")


def _leaf(value) -> str:
    """One unescaped value (None for empty) → escaped, as ``escape.escape`` does."""
    if not value:
        return ""
    if type(value) is str and _NEEDS_ESCAPE(value) is None:
        return value
    return value.translate(_ESCAPE_TABLE)


def repeated(values: list[list]) -> str:
    """Repetitions of a field, each given as a list of components."""
    return "~".join([component(v) for v in values])


def segment(name: str, fields: list[str]) -> str:
    """A segment from already-encoded fields 1..n; trailing empty fields dropped."""
    end = len(fields)
    while end and not fields[end - 1]:
        end -= 1
    return "|".join([name, *fields[:end]])


def msh(fields: list[str]) -> str:
    """MSH from encoded fields MSH-3..n (MSH-1/2 are the standard delimiters)."""
    return segment("MSH", [_SEPS.encoding_characters, *fields])


def msh_time(ts: datetime) -> str:
    """``timestamps.v2_now(ts)`` (YYYYMMDDHHMMSS±ZZZZ for MSH-7), from isoformat(),
    which is quicker than strftime()."""
    if type(ts) is not datetime:
        return v2_now(ts)
    text = ts.isoformat(timespec="seconds")     # YYYY-MM-DDTHH:MM:SS+HH:MM
    if len(text) != 25 or ts.year < 1000:      # no offset, one in seconds, or a short year
        return v2_now(ts)
    return text.replace("-", "", 2).replace("T", "", 1).replace(":", "")


def hd(value: str) -> str:
    """A header value as ``Message.header()`` gives it ('^'-joined, unescaped) → encoded."""
    if type(value) is str:
        return _cached_hd(value)
    return component(value.split("^")) if value else ""


@lru_cache(maxsize=256)     # the same few applications and facilities head every message
def _cached_hd(value: str) -> str:
    return component(value.split("^")) if value else ""


def _hex_escape(err: UnicodeEncodeError) -> tuple[str, int]:
    """A character the charset lacks → ``\\Xhh..\\`` of its UTF-8 bytes (never lost;
    ``escape.unescape`` reads it back)."""
    chunk = err.object[err.start:err.end]
    return "".join(f"\\X{c.encode('utf-8').hex().upper()}\\" for c in chunk), err.end


codecs.register_error("hl7v2-hex", _hex_escape)

# MSH-18 values we write → codec
CHARSETS = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii"}


def message(segments: list[str], encoding: str = "utf-8") -> bytes:
    """Segments joined and terminated with CR, encoded; characters the encoding
    lacks become ``\\X..\\`` escapes."""
    return ("\r".join(segments) + "\r").encode(encoding, errors="hl7v2-hex")
