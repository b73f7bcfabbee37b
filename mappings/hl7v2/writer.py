"""Lean ER7 writing: escaped leaves joined with the standard delimiters."""
from __future__ import annotations

import codecs

from .escape import escape
from .separators import DEFAULT

_SEPS = DEFAULT


def component(parts: list) -> str:
    """Components, each a str or a list of subcomponent strs, unescaped in, escaped out."""
    out = []
    for p in parts:
        if isinstance(p, list):
            out.append("&".join(escape(s or "", _SEPS) for s in p).rstrip("&"))
        else:
            out.append(escape(p or "", _SEPS))
    return "^".join(out).rstrip("^")


def repeated(values: list[list]) -> str:
    """Repetitions of a field, each given as a list of components."""
    return "~".join(component(v) for v in values)


def segment(name: str, fields: list[str]) -> str:
    """A segment from already-encoded fields 1..n; trailing empty fields dropped."""
    while fields and not fields[-1]:
        fields = fields[:-1]
    return "|".join([name, *fields])


def msh(fields: list[str]) -> str:
    """MSH from encoded fields MSH-3..n (MSH-1/2 are the standard delimiters)."""
    while fields and not fields[-1]:
        fields = fields[:-1]
    return "|".join(["MSH", _SEPS.encoding_characters, *fields])


def hd(value: str) -> str:
    """A header value as ``Message.header()`` gives it ('^'-joined, unescaped) → encoded."""
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
