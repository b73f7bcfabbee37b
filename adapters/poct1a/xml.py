"""Parse one POCT1-A2 message with a hardened XML parser into a tolerant view.

The parser is defusedxml's (DTDs, entity declarations and external
references are refused) behind a size bound and a nesting bound, so a
billion-laughs document, an external entity, a 20 MB document or a
10 000-deep tree all end in :class:`PoctXmlError` with a stable code.

The view (:class:`Node`, :class:`PoctMessage`) is tolerant the way devices
need: element names match case-insensitively and without namespace, and a
lookup also tries the known vendor misspellings in :data:`FIELD_ALIASES`
(DOMAIN.md §3.1: ``ACK.type_id`` for ``ACK.type_cd``, ``ACK.control_id``
for ``ACK.ack_control_id``, ``ACC.permision_level_cd`` …).
"""
from __future__ import annotations

import re
from typing import Iterator, Mapping
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser

DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_MAX_DEPTH = 32

# Codes carried by PoctXmlError (and so by ESC/ACK AE notes and stats).
XML_TOO_LARGE = "POCT1A-XML-TOO-LARGE"
XML_TOO_DEEP = "POCT1A-XML-TOO-DEEP"
XML_DTD_FORBIDDEN = "POCT1A-XML-DTD-FORBIDDEN"
XML_ENTITY_FORBIDDEN = "POCT1A-XML-ENTITY-FORBIDDEN"
XML_MALFORMED = "POCT1A-XML-MALFORMED"
XML_NOT_XML = "POCT1A-XML-NOT-XML"

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "ACK.type_cd": ("ACK.type_id",),
    "ACK.ack_control_id": ("ACK.control_id",),
    "ACC.permission_level_cd": ("ACC.permision_level_cd",),
}


class PoctXmlError(Exception):
    """A message that cannot be framed or parsed; ``code`` is stable."""

    def __init__(self, code: str, text: str):
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


class _DepthLimitedBuilder(TreeBuilder):
    """A TreeBuilder that refuses trees deeper than ``max_depth``."""

    def __init__(self, max_depth: int):
        super().__init__()
        self._depth = 0
        self._max = max_depth

    def start(self, tag, attrs):
        self._depth += 1
        if self._depth > self._max:
            raise PoctXmlError(XML_TOO_DEEP, f"elements nested deeper than {self._max}")
        return super().start(tag, attrs)

    def end(self, tag):
        self._depth -= 1
        return super().end(tag)


def parse_xml(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES,
              max_depth: int = DEFAULT_MAX_DEPTH) -> Element:
    """Parse one XML document safely; raise :class:`PoctXmlError` on anything hostile."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise PoctXmlError(XML_TOO_LARGE, f"{len(data)} bytes exceeds the limit of {max_bytes}")
    parser = DefusedXMLParser(target=_DepthLimitedBuilder(max_depth), forbid_dtd=True,
                              forbid_entities=True, forbid_external=True)
    try:
        parser.feed(data)
        return parser.close()
    except defusedxml.DTDForbidden:
        raise PoctXmlError(XML_DTD_FORBIDDEN, "document type declarations are not accepted") from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise PoctXmlError(XML_ENTITY_FORBIDDEN, "entity declarations and external references are not accepted") from None
    except ParseError as exc:
        raise PoctXmlError(XML_MALFORMED, f"not well-formed XML ({exc})") from None
    except RecursionError:
        raise PoctXmlError(XML_TOO_DEEP, "elements nested too deeply") from None
    except (LookupError, ValueError) as exc:   # encoding= unknown or multi-byte (found by fuzzing)
        raise PoctXmlError(XML_MALFORMED, f"not well-formed XML ({exc})") from None


def local_name(tag: str) -> str:
    """An element name without its ``{namespace}`` prefix."""
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag


class Node:
    """A tolerant read-only view of one element.

    ``find``/``findall``/``value``/``unit`` take one or more element names
    (alternatives); each name also matches its aliases and any letter case.
    """

    __slots__ = ("element", "_aliases")

    def __init__(self, element: Element, aliases: Mapping[str, tuple[str, ...]] = FIELD_ALIASES):
        self.element = element
        self._aliases = aliases

    def __repr__(self) -> str:
        return f"<Node {self.name}>"

    @property
    def name(self) -> str:
        return local_name(self.element.tag)

    @property
    def V(self) -> str | None:  # noqa: N802 - the POCT1-A attribute name
        return self.element.get("V")

    @property
    def U(self) -> str | None:  # noqa: N802
        return self.element.get("U")

    def attr(self, key: str) -> str | None:
        return self.element.get(key)

    def _wanted(self, names: tuple[str, ...]) -> frozenset[str]:
        out = set()
        for n in names:
            out.add(n.casefold())
            out.update(a.casefold() for a in self._aliases.get(n, ()))
        return frozenset(out)

    def _wrap(self, el: Element) -> "Node":
        return Node(el, self._aliases)

    def _descendants(self) -> Iterator[Element]:
        it = self.element.iter()
        next(it)  # the element itself
        return it

    def children(self, *names: str) -> list["Node"]:
        """Direct children named any of ``names`` (all children when none given)."""
        if not names:
            return [self._wrap(c) for c in self.element]
        wanted = self._wanted(names)
        return [self._wrap(c) for c in self.element if local_name(c.tag).casefold() in wanted]

    def child(self, *names: str) -> "Node | None":
        found = self.children(*names)
        return found[0] if found else None

    def findall(self, *names: str) -> list["Node"]:
        """All descendants named any of ``names``, in document order."""
        wanted = self._wanted(names)
        return [self._wrap(e) for e in self._descendants() if local_name(e.tag).casefold() in wanted]

    def find(self, *names: str) -> "Node | None":
        """The first descendant named any of ``names``."""
        wanted = self._wanted(names)
        for e in self._descendants():
            if local_name(e.tag).casefold() in wanted:
                return self._wrap(e)
        return None

    def value(self, *names: str) -> str | None:
        """The ``V`` attribute of the first descendant named any of ``names``."""
        node = self.find(*names)
        return None if node is None else node.V

    def unit(self, *names: str) -> str | None:
        """The ``U`` attribute of the first descendant named any of ``names``."""
        node = self.find(*names)
        return None if node is None else node.U


class PoctMessage(Node):
    """One parsed POCT1-A message: its type, header and the raw bytes."""

    __slots__ = ("raw",)

    def __init__(self, element: Element, raw: bytes,
                 aliases: Mapping[str, tuple[str, ...]] = FIELD_ALIASES):
        super().__init__(element, aliases)
        self.raw = raw

    def __repr__(self) -> str:
        return f"<PoctMessage {self.msg_type} control_id={self.control_id!r}>"

    @property
    def msg_type(self) -> str:
        """The root element name in upper case, e.g. ``"OBS.R01"``."""
        return self.name.upper()

    @property
    def header(self) -> Node | None:
        return self.child("HDR")

    def _hdr(self, name: str) -> str | None:
        hdr = self.header
        value = (hdr or self).value(name)
        return value.strip() if value is not None else None

    @property
    def control_id(self) -> str | None:
        return self._hdr("HDR.control_id") or None

    @property
    def version(self) -> str | None:
        return self._hdr("HDR.version_id")

    @property
    def creation_dttm(self) -> str | None:
        return self._hdr("HDR.creation_dttm")


def parse_message(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_depth: int = DEFAULT_MAX_DEPTH,
                  aliases: Mapping[str, tuple[str, ...]] = FIELD_ALIASES) -> PoctMessage:
    """Parse one POCT1-A message; raise :class:`PoctXmlError` when it cannot be."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return PoctMessage(parse_xml(raw, max_bytes=max_bytes, max_depth=max_depth), raw, aliases)


_CONTROL_ID = re.compile(rb"""HDR\.control_id\s+V\s*=\s*["']([^"'<>&]{1,64})["']""")


def sniff_control_id(raw: bytes) -> str | None:
    """Best-effort control id from bytes that did not parse, to address an ACK AE."""
    m = _CONTROL_ID.search(raw[:4096])
    if m is None:
        return None
    return m.group(1).decode("utf-8", "replace").strip() or None
