"""A lean HL7 v2 ER7 parser: plain string splitting, components split on access.

``parse`` reads the delimiters from MSH-1/MSH-2 and the character set from
MSH-18, decodes the bytes, and splits segments and fields. Repetitions,
components and subcomponents are split only when a value is asked for, so a
message costs little more than one ``str.split`` per segment.

Everything that is wrong with the bytes raises ``Hl7ParseError`` carrying an
``Issue`` with a stable code and whatever of MSH could be read, so that the
caller can still answer with a negative ACK.
"""
from __future__ import annotations

import re
from functools import lru_cache

from ..fhir_strings import ODD_SPACE
from ..issue import Issue
from .escape import unescape
from .separators import Separators

_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BAD_DELIMITER = re.compile(r"[A-Za-z0-9\s\x00-\x1f\x7f]")

# MSH-18 (HL7 table 0211) → Python codec; "" is the standard's default (ASCII),
# which in practice means "whatever the sender had", so it is sniffed.
_CHARSETS = {
    "": None, "ASCII": None,
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UNICODE": "utf-8",
    "8859/1": "latin-1", "8859/15": "iso8859-15", "8859/2": "iso8859-2",
    "8859/4": "iso8859-4", "8859/5": "iso8859-5", "8859/7": "iso8859-7",
    "8859/9": "iso8859-9", "WINDOWS-1252": "cp1252", "CP1252": "cp1252",
}


class Hl7ParseError(Exception):
    """The bytes are not a message we can read. ``issue`` says why."""

    def __init__(self, issue: Issue, header: dict | None = None):
        super().__init__(f"{issue.code}: {issue.text}")
        self.issue = issue
        self.header = header


def _fail(code: str, location: str, text: str, header: dict | None = None,
          text_nb: str = "") -> Hl7ParseError:
    return Hl7ParseError(Issue("error", code, location, text, text_nb), header)


class Segment:
    """One segment. ``fields[i]`` is field i as received (still escaped);
    ``fields[0]`` is the segment name, and for MSH ``fields[1]`` is the field
    separator and ``fields[2]`` the encoding characters, as the standard numbers them."""

    __slots__ = ("name", "fields", "seps", "_split")

    def __init__(self, name: str, fields: list[str], seps: Separators):
        self.name = name
        self.fields = fields
        self.seps = seps
        self._split: dict[int, list[list[str]]] = {}   # field → reps → components

    def __repr__(self) -> str:
        return f"Segment({self.name}, {len(self.fields) - 1} fields)"

    def field(self, n: int) -> str:
        """Field ``n`` raw (escaped, repetitions not split); "" if absent."""
        f = self.fields
        return f[n] if 0 < n < len(f) else ""

    def repetitions(self, n: int) -> list[str]:
        """The raw repetitions of field ``n`` ([] when empty)."""
        raw = self.field(n)
        if not raw:
            return []
        if n <= 2 and self.name == "MSH":
            return [raw]
        return raw.split(self.seps.repetition)

    def repetition_count(self, n: int) -> int:
        """``len(self.repetitions(n))`` without splitting the field again."""
        if n <= 2 and self.name == "MSH":
            return 1 if self.field(n) else 0
        split = self._split.get(n)
        if split is None:
            split = self._split_field(n)
        return len(split)

    def components(self, n: int, rep: int = 0) -> list[str]:
        """The raw components of repetition ``rep`` of field ``n`` (split once, then cached)."""
        split = self._split.get(n)
        if split is None:
            split = self._split_field(n)
        return split[rep] if rep < len(split) else []

    def _split_field(self, n: int) -> list[list[str]]:
        """Split field ``n`` into repetitions of components and cache the result."""
        f = self.fields
        raw = f[n] if 0 < n < len(f) else ""
        if n <= 2 and self.name == "MSH":
            split = [[raw]]
        elif not raw:
            split = []
        elif self.seps.repetition not in raw:    # the common case, without the extra list
            split = [raw.split(self.seps.component)]
        else:
            comp = self.seps.component
            split = [r.split(comp) for r in raw.split(self.seps.repetition)]
        self._split[n] = split
        return split

    def subcomponents(self, n: int, rep: int = 0, comp: int = 1) -> list[str]:
        """The unescaped subcomponents of one component."""
        comps = self.components(n, rep)
        if not 0 < comp <= len(comps):
            return []
        seps = self.seps
        subs = comps[comp - 1].split(seps.subcomponent)
        if seps.escape not in comps[comp - 1]:
            return subs
        return [unescape(s, seps) for s in subs]

    def value(self, n: int, rep: int = 0, comp: int = 1, sub: int = 1) -> str:
        """One leaf value, unescaped; "" if absent."""
        if n <= 2 and self.name == "MSH":
            return self.field(n) if rep == 0 and comp == 1 and sub == 1 else ""
        split = self._split.get(n)      # self.components(n, rep), inlined: the hottest path
        if split is None:
            split = self._split_field(n)
        if rep >= len(split):
            return ""
        comps = split[rep]
        if comp != 1 and not 0 < comp <= len(comps):    # (comps is never empty)
            return ""
        raw = comps[comp - 1]
        seps = self.seps
        if sub > 1 or seps.subcomponent in raw:
            subs = raw.split(seps.subcomponent)
            if sub > len(subs):
                return ""
            raw = subs[sub - 1]
        return unescape(raw, seps) if seps.escape in raw else raw

    def component_values(self, n: int, rep: int = 0) -> list[str]:
        """Each component's first subcomponent, unescaped (index 0 = component 1)."""
        comps = self.components(n, rep)
        seps = self.seps
        sub, esc = seps.subcomponent, seps.escape
        joined = "".join(comps)
        if sub not in joined and esc not in joined:   # the common case: nothing to split or unescape
            return list(comps)
        out = []
        for c in comps:
            if sub in c:
                c = c.split(sub, 1)[0]
            out.append(unescape(c, seps) if esc in c else c)
        return out


class Message:
    """A parsed message: its segments in order, delimiters and codec."""

    __slots__ = ("segments", "encoding", "separators", "issues", "odd_space", "_index")

    def __init__(self, segments: list[Segment], encoding: str, separators: Separators,
                 issues: list[Issue] | None = None, odd_space: bool = True):
        self.segments = segments
        self.encoding = encoding
        self.separators = separators
        self.issues = issues or []   # warnings found while parsing (e.g. LF separators)
        # The text may hold ODD_SPACE, as sent or through a hex/multibyte escape
        # (False only when it certainly does not).
        self.odd_space = odd_space
        self._index: dict[str, list[Segment]] | None = None

    def segments_named(self, name: str) -> list[Segment]:
        if self._index is None:
            idx: dict[str, list[Segment]] = {}
            for s in self.segments:
                idx.setdefault(s.name, []).append(s)
            self._index = idx
        return self._index.get(name, [])

    def get(self, seg_name: str, field: int, *, occurrence: int = 0, rep: int = 0,
            comp: int = 1, sub: int = 1) -> str:
        """The unescaped value at SEG-field.comp.sub of the given occurrence; "" if absent."""
        segs = self.segments_named(seg_name)
        if occurrence >= len(segs):
            return ""
        return segs[occurrence].value(field, rep, comp, sub)

    def header(self) -> dict:
        return _header(self.segments[0])

    @property
    def control_id(self) -> str:
        return self.get("MSH", 10)

    @property
    def message_type(self) -> str:
        return self.header()["message_type"]

    @property
    def version(self) -> str:
        return self.get("MSH", 12)


def _hd(seg: Segment, n: int) -> str:
    """An HD/EI field as its unescaped components joined by '^' (standard separator)."""
    return "^".join(seg.component_values(n)).rstrip("^")


def _header(msh: Segment) -> dict:
    code, trigger, structure = msh.value(9, comp=1), msh.value(9, comp=2), msh.value(9, comp=3)
    return {
        "control_id": msh.value(10),
        "message_type": f"{code}^{trigger}" if trigger else code,
        "message_code": code,
        "trigger": trigger,
        "structure": structure,
        "version": msh.value(12),
        "sending_app": _hd(msh, 3),
        "sending_facility": _hd(msh, 4),
        "receiving_app": _hd(msh, 5),
        "receiving_facility": _hd(msh, 6),
        "processing_id": msh.value(11),
        "accept_ack_type": msh.value(15),
        "app_ack_type": msh.value(16),
        "charset": msh.value(18),
        "timestamp": msh.value(7),
    }


def _separators(msh_line: str) -> Separators:
    """Read and check MSH-1 and MSH-2."""
    if len(msh_line) < 4:
        raise _fail("HL7-DELIMITERS", "MSH-1", "MSH is too short to declare its delimiters")
    fs = msh_line[3]
    end = msh_line.find(fs, 4)
    enc = msh_line[4:] if end < 0 else msh_line[4:end]
    if _BAD_DELIMITER.match(fs):
        raise _fail("HL7-DELIMITERS", "MSH-1", f"MSH-1 field separator {fs!r} is not a delimiter")
    if not 4 <= len(enc) <= 5:
        raise _fail("HL7-DELIMITERS", "MSH-2",
                    f"MSH-2 must hold 4 encoding characters (5 with truncation), found {len(enc)}")
    chars = fs + enc
    if len(set(chars)) != len(chars) or _BAD_DELIMITER.search(enc):
        raise _fail("HL7-DELIMITERS", "MSH-2",
                    "MSH-2 encoding characters repeat each other or the field separator, "
                    "or are letters, digits or spaces")
    return Separators(fs, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else "")


def _decode(raw: bytes, charset: str, header: dict) -> tuple[str, str]:
    name = charset.strip().upper()
    if name not in _CHARSETS:
        raise _fail("HL7-ENCODING", "MSH-18", f"unsupported character set {charset!r} in MSH-18",
                    header)
    codec = _CHARSETS[name]
    if codec is None:                      # undeclared / ASCII: sniff
        if raw.isascii():
            return raw.decode("ascii"), "ascii"
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return raw.decode("latin-1"), "latin-1"
    try:
        return raw.decode(codec), codec
    except UnicodeDecodeError as e:
        raise _fail("HL7-ENCODING", "MSH-18",
                    f"bytes at offset {e.start} are not valid {codec} as MSH-18 declares",
                    header) from None


def _strip_envelope(raw: bytes) -> bytes:
    """Drop a UTF-8 BOM, stray MLLP framing bytes and surrounding blank lines."""
    raw = raw.strip(b" \t\r\n\x0b\x1c")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:].lstrip(b" \t\r\n")
    return raw


def parse(raw: bytes, *, max_segments: int = 5000, max_repetitions: int = 1000) -> Message:
    """Parse one ER7-encoded message (MLLP framing already removed)."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError("parse() takes bytes")
    raw = _strip_envelope(bytes(raw))
    if not raw:
        raise _fail("HL7-EMPTY", "", "the message is empty", None, "Meldingen er tom")
    if not raw.startswith(b"MSH"):
        what = raw[:3].decode("latin-1") if raw[:3].isalpha() and raw[:3].isascii() else "bytes"
        extra = " (batches are not accepted; send one message per frame)" \
            if what in ("BHS", "FHS") else ""
        raise _fail("HL7-MSH-MISSING", "MSH", f"the message does not start with MSH but {what!r}{extra}",
                    None, "Meldingen starter ikke med MSH")

    issues: list[Issue] = []
    cr = raw.find(b"\r")
    if cr < 0:
        terminator = "\n"
        if b"\n" in raw:
            issues.append(Issue("warning", "HL7-SEGMENT-SEPARATOR", "MSH",
                                "segments are separated by LF instead of CR"))
    else:
        terminator = "\r"
    msh_end = raw.find(terminator.encode())
    msh_bytes = raw if msh_end < 0 else raw[:msh_end]
    msh_line = msh_bytes.rstrip(b"\n").decode("latin-1")
    seps = _separators(msh_line)
    msh = _segment(msh_line, seps)
    header = _header(msh)
    if len(msh.fields) < 13:
        raise _fail("HL7-MSH-TOO-SHORT", "MSH",
                    f"MSH has {len(msh.fields) - 1} fields; at least 12 (to MSH-12 version) are required",
                    header)
    if not header["message_code"]:
        raise _fail("HL7-MSH-9-MISSING", "MSH-9", "MSH-9 message type is empty", header)
    if not header["version"]:
        raise _fail("HL7-MSH-12-MISSING", "MSH-12", "MSH-12 version id is empty", header)

    charset = msh.value(18)
    text, encoding = _decode(raw, charset, header)
    bad = _CONTROL.search(text)
    if bad:
        raise _fail("HL7-CONTROL-CHARACTER", "", f"control character 0x{ord(bad.group()):02X} at "
                    f"offset {bad.start()} is not allowed in HL7 v2 text", header)
    if terminator == "\r" and "\n" in text:
        text = text.replace("\r\n", "\r")
    lines = text.split(terminator)
    if len(lines) > max_segments and sum(1 for ln in lines if ln.strip()) > max_segments:
        raise _fail("HL7-TOO-MANY-SEGMENTS", "", f"more than {max_segments} segments", header)
    segments = _segments(lines, seps, header, max_repetitions)
    # ASCII text holds none as sent (_CONTROL refused \x0b, \x0c, \x1c-\x1f).
    odd_space = ((not text.isascii() and ODD_SPACE.search(text) is not None)
                 or _hex_escape(seps.escape).search(text) is not None)
    return Message(segments, encoding, seps, issues, odd_space)


@lru_cache(maxsize=16)
def _hex_escape(escape: str) -> re.Pattern:
    """The start of a hex (\\X) or multibyte (\\M) escape, which may hide any character."""
    return re.compile(re.escape(escape) + "[XM]")


def _segments(lines: list[str], seps: Separators, header: dict,
              max_repetitions: int) -> list[Segment]:
    out: list[Segment] = []
    rep = seps.repetition
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name = line[:3]
        if not _SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != seps.field):
            raise _fail("HL7-SEGMENT-NAME", f"segment {number}",
                        f"segment {number} does not start with a valid segment name", header)
        if name == "MSH" and out:
            raise _fail("HL7-MULTIPLE-MESSAGES", f"segment {number}",
                        "a second MSH: send one message per frame", header)
        if line.count(rep) >= max_repetitions:
            _check_repetitions(line, name, number, seps, header, max_repetitions)
        out.append(_segment(line, seps))
    return out


def _check_repetitions(line: str, name: str, number: int, seps: Separators, header: dict,
                       max_repetitions: int) -> None:
    fields = line.split(seps.field)
    for i, f in enumerate(fields[1:], 1):
        if name == "MSH" and i == 1:
            continue
        if f.count(seps.repetition) >= max_repetitions:
            pos = i + 1 if name == "MSH" else i
            raise _fail("HL7-TOO-MANY-REPETITIONS", f"{name}-{pos}",
                        f"{name}-{pos} in segment {number} has more than {max_repetitions} "
                        "repetitions", header)


def _segment(line: str, seps: Separators) -> Segment:
    fields = line.split(seps.field)
    name = fields[0]
    if name == "MSH":
        fields.insert(1, seps.field)
    return Segment(name, fields, seps)
