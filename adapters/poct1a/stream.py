"""Split a TCP byte stream into POCT1-A messages.

Devices send one XML document after another with no framing bytes. The
splitter feeds the stream to an incremental expat parser (so comments,
CDATA and ``>`` inside attribute values cannot fool it) and cuts a message
where its root element closes. Whitespace between messages and an XML
declaration at the start of each are allowed.

It refuses, with :class:`~adapters.poct1a.xml.PoctXmlError`: bytes that are
not XML, malformed XML, a DOCTYPE or entity declaration (no DTD is ever
read), nesting deeper than ``max_depth``, and a message longer than
``max_bytes`` (the buffer never holds more than that plus one read). After
an error the stream cannot be resynchronised; the caller ends the
conversation.
"""
from __future__ import annotations

import pyexpat
import re

from .xml import (DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, XML_DTD_FORBIDDEN, XML_ENTITY_FORBIDDEN,
                  XML_MALFORMED, XML_NOT_XML, XML_TOO_DEEP, XML_TOO_LARGE, PoctXmlError)

_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


class _RootClosed(Exception):
    """Raised from the expat end handler to stop at the root's end tag."""

    def __init__(self, index: int):
        self.index = index


class StreamSplitter:
    """Incremental splitter: ``feed(bytes) -> list[bytes]`` of whole messages."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH):
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self._buf = bytearray()
        self._parser: pyexpat.XMLParserType | None = None
        self._fed = 0          # bytes of _buf given to the current parser
        self._depth = 0
        self._root = ""
        self._failed: PoctXmlError | None = None
        self.failed_head = b""  # first bytes of the message that failed, for a best-effort reply

    @property
    def has_partial(self) -> bool:
        """True while part of a message is buffered (for a per-message deadline)."""
        return bool(self._buf.strip(_WHITESPACE))

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the messages completed by them, in order."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out: list[bytes] = []
        try:
            while (msg := self._next()) is not None:
                out.append(msg)
        except PoctXmlError as exc:
            self._failed = exc
            upto = self._parser.CurrentByteIndex if self._parser is not None else -1
            upto = len(self._buf) if upto < 0 or exc.code == XML_TOO_LARGE else upto
            self.failed_head = bytes(self._buf[:min(upto, 4096)])
            self._buf.clear()
            raise
        return out

    def _next(self) -> bytes | None:
        if self._parser is None and not self._start():
            return None
        end = self._advance()
        if end is None:
            if len(self._buf) > self.max_bytes:
                raise PoctXmlError(XML_TOO_LARGE, f"message exceeds {self.max_bytes} bytes")
            return None
        if end > self.max_bytes:
            raise PoctXmlError(XML_TOO_LARGE, f"message of {end} bytes exceeds {self.max_bytes}")
        msg = bytes(self._buf[:end])
        del self._buf[:end]
        self._parser = None
        return msg

    def _start(self) -> bool:
        """Drop whitespace before a message; start a parser at its first byte."""
        n = len(self._buf) - len(self._buf.lstrip(_WHITESPACE))
        del self._buf[:n]
        if not self._buf:
            return False
        if not (self._buf.startswith(b"<") or self._buf.startswith(_BOM)
                or _BOM.startswith(bytes(self._buf[:3]))):
            raise PoctXmlError(XML_NOT_XML, "bytes between messages are not XML")
        self._parser = self._new_parser()
        self._fed = 0
        self._depth = 0
        self._root = ""
        return True

    def _new_parser(self) -> pyexpat.XMLParserType:
        p = pyexpat.ParserCreate()
        p.StartElementHandler = self._on_start
        p.EndElementHandler = self._on_end
        p.StartDoctypeDeclHandler = self._on_doctype
        p.EntityDeclHandler = self._on_entity
        p.UnparsedEntityDeclHandler = self._on_entity
        p.ExternalEntityRefHandler = self._on_external
        if hasattr(p, "SetReparseDeferralEnabled"):  # expat >= 2.6: report tags promptly
            p.SetReparseDeferralEnabled(False)
        return p

    def _advance(self) -> int | None:
        """Feed unfed bytes to expat; the message's end offset once the root closes."""
        chunk = bytes(self._buf[self._fed:])
        self._fed = len(self._buf)
        try:
            self._parser.Parse(chunk, False)
        except _RootClosed as closed:
            return self._end_offset(closed.index)
        except (pyexpat.ExpatError, LookupError, ValueError) as exc:   # bad encoding= (fuzzing)
            raise PoctXmlError(XML_MALFORMED, f"not well-formed XML ({exc})") from None
        return None

    def _end_offset(self, index: int) -> int:
        """Where the message ends, given expat's offset of the root end event.

        For ``</ROOT>`` expat points at its ``<``; for an empty root
        ``<ROOT/>`` it points just past it.
        """
        tag = b"</" + self._root.encode("utf-8")
        pattern = re.compile(re.escape(tag) + rb"\s*>")
        m = pattern.match(self._buf, index)
        return m.end() if m else index

    # expat handlers --------------------------------------------------------

    def _on_start(self, name: str, _attrs) -> None:
        if self._depth == 0:
            self._root = name
        self._depth += 1
        if self._depth > self.max_depth:
            raise PoctXmlError(XML_TOO_DEEP, f"elements nested deeper than {self.max_depth}")

    def _on_end(self, _name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            raise _RootClosed(self._parser.CurrentByteIndex)

    def _on_doctype(self, *_args) -> None:
        raise PoctXmlError(XML_DTD_FORBIDDEN, "document type declarations are not accepted")

    def _on_entity(self, *_args) -> None:
        raise PoctXmlError(XML_ENTITY_FORBIDDEN, "entity declarations are not accepted")

    def _on_external(self, *_args) -> int:
        raise PoctXmlError(XML_ENTITY_FORBIDDEN, "external references are not accepted")
