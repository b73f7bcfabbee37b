"""Read a POCT1-A2 message for mapping: safe parse and tolerant field access.

The mapping takes raw bytes (it must not import the adapter), an
ElementTree element, or anything with an ``element`` attribute (the
adapter's ``PoctMessage``), so the gateway need not parse twice.
"""
from __future__ import annotations

from typing import Iterator
from xml.etree.ElementTree import Element

import defusedxml
from defusedxml.ElementTree import fromstring

MAX_BYTES = 1_000_000

# Vendor misspellings accepted on input (DOMAIN.md §3.1).
ALIASES: dict[str, tuple[str, ...]] = {
    "ACC.permission_level_cd": ("ACC.permision_level_cd",),
}


class SourceError(ValueError):
    """The message is not readable XML (or is hostile)."""


def root_of(msg) -> Element:
    """The root element of ``msg`` (bytes, str, Element or object with ``.element``)."""
    element = getattr(msg, "element", None)
    if isinstance(element, Element):
        return element
    if isinstance(msg, Element):
        return msg
    data = msg.encode("utf-8") if isinstance(msg, str) else bytes(msg)
    if len(data) > MAX_BYTES:
        raise SourceError(f"message of {len(data)} bytes exceeds {MAX_BYTES}")
    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise SourceError(f"forbidden XML construct ({type(exc).__name__})") from None
    except Exception as exc:  # ParseError, RecursionError, UnicodeError …
        raise SourceError(f"not well-formed XML ({type(exc).__name__})") from None


def name_of(el: Element) -> str:
    tag = el.tag if isinstance(el.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def _matches(names: tuple[str, ...]) -> frozenset[str]:
    wanted = set()
    for n in names:
        wanted.add(n.casefold())
        wanted.update(a.casefold() for a in ALIASES.get(n, ()))
    return frozenset(wanted)


def descendants(el: Element, *names: str) -> Iterator[Element]:
    """Descendants of ``el`` (not ``el`` itself) named any of ``names``, any case."""
    wanted = _matches(names)
    it = el.iter()
    next(it)
    return (e for e in it if name_of(e).casefold() in wanted)


def children(el: Element, *names: str) -> list[Element]:
    wanted = _matches(names)
    return [c for c in el if name_of(c).casefold() in wanted]


def first(el: Element, *names: str) -> Element | None:
    return next(descendants(el, *names), None)


def value(el: Element | None, *names: str) -> str | None:
    """The stripped ``V`` of the first descendant named any of ``names``; None if absent or blank."""
    if el is None:
        return None
    found = first(el, *names)
    v = found.get("V") if found is not None else None
    if v is None:
        return None
    return v.strip() or None
