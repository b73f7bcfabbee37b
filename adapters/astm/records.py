"""ASTM E1394 / CLSI LIS02-A2 records: delimiters, escapes, fields.

A record is one line (ended by CR) of fields split by the field delimiter;
a field holds repeats split by the repeat delimiter, and a repeat holds
components split by the component delimiter. The H record declares the
delimiters in its first characters: ``H|\\^&`` = field ``|``, repeat ``\\``,
component ``^``, escape ``&`` (DOMAIN.md §3.3).

Escape sequences: ``&F&`` field, ``&S&`` component, ``&R&`` repeat, ``&E&``
escape delimiter, and ``&Xhh..&`` hexadecimal characters. Unknown sequences
(``&H&``, ``&.br&``…) stay as they are. With ``lenient_escapes`` (the
default) the escape character directly before a delimiter makes that
delimiter literal, as some instruments send it (``ABOD&|Full&&Interp`` is
``ABOD|Full&Interp``); a conforming message never has that pattern, so the
tolerance costs nothing there.

A parsed field is a list of repeats, each a list of component strings
(already unescaped). ``Record.fields[0]`` is the record type field, so ASTM
position *n* is ``fields[n - 1]``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

Field = list[list[str]]
# What Record.from_values accepts for one field: a string, a list of
# components, or a list of repeats (each a list of components).
FieldValue = Union[str, list[str], list[list[str]]]

#: Characters a record value may not hold: record and frame control characters.
FORBIDDEN = frozenset("\r\n\x02\x03\x04\x05\x06\x15\x17")
_HEX_SEQ = re.compile(r"X([0-9A-Fa-f]{2})+\Z")


class AstmParseError(ValueError):
    """The text is not an E1394 message at all (for example, no H record)."""


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The four delimiter characters of a message."""
    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str = "&"

    def __post_init__(self) -> None:
        chars = (self.field, self.repeat, self.component, self.escape)
        if any(len(c) != 1 or c in FORBIDDEN or c.isalnum() for c in chars):
            raise ValueError("delimiters must be single non-alphanumeric characters")
        if len(set(chars)) != 4:
            raise ValueError("delimiters must be four different characters")

    @property
    def definition(self) -> str:
        """The H-2 text that declares these delimiters, e.g. ``\\^&``."""
        return self.repeat + self.component + self.escape

    @classmethod
    def from_header(cls, line: str) -> "Delimiters":
        """Read the delimiters an H record declares; defaults for what is missing.

        Tolerates a repeated character in the definition (``H|\\\\^&``).
        """
        if len(line) < 2 or line[0] not in "Hh":
            return cls()
        fsep = line[1]
        rest = line[2:].split(fsep, 1)[0]
        declared: list[str] = []
        for ch in rest:
            if ch not in declared and ch != fsep:
                declared.append(ch)
        defaults = ["\\", "^", "&"]
        chosen = (declared + defaults[len(declared):])[:3] if declared else defaults
        try:
            return cls(fsep, *chosen)
        except ValueError:
            try:
                return cls(fsep)
            except ValueError:
                return cls()


def escape(text: str, d: Delimiters) -> str:
    """Escape the delimiter characters in ``text``."""
    if not any(c in text for c in (d.escape, d.field, d.repeat, d.component)):
        return text
    e = d.escape
    out = text.replace(e, f"{e}E{e}")
    out = out.replace(d.field, f"{e}F{e}").replace(d.repeat, f"{e}R{e}")
    return out.replace(d.component, f"{e}S{e}")


def _escape_sequence(seq: str, d: Delimiters) -> str | None:
    """The text for the sequence between two escape characters, None if unknown."""
    simple = {"F": d.field, "S": d.component, "R": d.repeat, "E": d.escape}
    if seq in simple:
        return simple[seq]
    if _HEX_SEQ.match(seq):
        return bytes.fromhex(seq[1:]).decode("latin-1")
    return None


def _tokens(line: str, d: Delimiters, lenient: bool):
    """Yield (kind, text): kind is "char" for literal text or a delimiter name."""
    kinds = {d.field: "field", d.repeat: "repeat", d.component: "component"}
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch in kinds:
            yield kinds[ch], ch
            i += 1
            continue
        if ch != d.escape:
            j = i + 1
            while j < n and line[j] not in kinds and line[j] != d.escape:
                j += 1
            yield "char", line[i:j]
            i = j
            continue
        end = line.find(d.escape, i + 1)
        seq = line[i + 1:end] if end > i else None
        if seq is not None and any(c in kinds for c in seq):
            seq = None                     # a sequence never spans a delimiter
        literal = _escape_sequence(seq, d) if seq is not None and seq else None
        if literal is not None:
            yield "char", literal
            i = end + 1
        elif lenient and i + 1 < n and (line[i + 1] in kinds or line[i + 1] == d.escape):
            yield "char", line[i + 1]
            i += 2
        elif seq:                          # unknown sequence: keep it as it is
            yield "char", line[i:end + 1]
            i = end + 1
        else:
            yield "char", ch
            i += 1


def split_record(line: str, d: Delimiters, lenient: bool = True) -> list[Field]:
    """Split one record line (without its CR) into fields."""
    if d.escape not in line:
        return [[rep.split(d.component) for rep in f.split(d.repeat)]
                for f in line.split(d.field)]
    fields: list[Field] = [[[""]]]
    for kind, text in _tokens(line, d, lenient):
        if kind == "char":
            fields[-1][-1][-1] += text
        elif kind == "field":
            fields.append([[""]])
        elif kind == "repeat":
            fields[-1].append([""])
        else:
            fields[-1][-1].append("")
    return fields


def split_header(line: str, d: Delimiters, lenient: bool = True) -> list[Field]:
    """Split an H record line: its second field is the delimiter definition,
    kept whole; the fields after it are split as usual."""
    parts = line.split(d.field, 2)
    fields: list[Field] = [[[parts[0]]], [[parts[1] if len(parts) > 1 else ""]]]
    if len(parts) > 2:
        fields += split_record(parts[2], d, lenient)
    return fields


def _as_field(value: FieldValue) -> Field:
    if isinstance(value, str):
        return [[value]]
    items = list(value)
    if not items:
        return [[""]]
    if all(isinstance(x, str) for x in items):
        return [list(items)]
    return [[x] if isinstance(x, str) else (list(x) or [""]) for x in items]


@dataclass
class Record:
    """One E1394 record; ``fields[n - 1]`` is ASTM position ``n``."""
    fields: list[Field] = field(default_factory=list)

    @classmethod
    def from_values(cls, values: list[FieldValue]) -> "Record":
        """Build from plain values: ``["O", "1", "LID1", "", ["", "", "", "CRP"]]``."""
        return cls([_as_field(v) for v in values])

    @property
    def type(self) -> str:
        """The record type letter, uppercase ("H", "P", "O", "R", ...)."""
        first = self.fields[0][0][0] if self.fields else ""
        return first.strip()[:1].upper()

    def repeats(self, n: int) -> list[list[str]]:
        """All repeats of field ``n`` (1-based ASTM position); [] when absent."""
        if n < 1 or n > len(self.fields):
            return []
        return self.fields[n - 1]

    def components(self, n: int, repeat: int = 1) -> list[str]:
        """The components of one repeat of field ``n``; [] when absent."""
        reps = self.repeats(n)
        return reps[repeat - 1] if 1 <= repeat <= len(reps) else []

    def get(self, n: int, component: int = 1, repeat: int = 1) -> str:
        """One component of one repeat of field ``n``; "" when absent."""
        comps = self.components(n, repeat)
        return comps[component - 1] if 1 <= component <= len(comps) else ""

    def text(self, n: int) -> str:
        """Field ``n`` with its components joined by ``^`` and repeats by ``\\``,
        trailing empty components dropped (for display and plain ids)."""
        return "\\".join("^".join(c).rstrip("^") for c in self.repeats(n))

    def encode(self, d: Delimiters) -> str:
        """The record line (without CR) with ``d``'s delimiters and escapes.

        The H record's second field is always written as ``d``'s definition.
        """
        parts = []
        for i, f in enumerate(self.fields):
            if i == 1 and self.type == "H":
                parts.append(d.definition)
                continue
            parts.append(d.repeat.join(
                d.component.join(escape(_checked(c), d) for c in rep) for rep in f))
        return d.field.join(parts)


def _checked(value: str) -> str:
    if any(c in FORBIDDEN for c in value):
        raise ValueError("record values may not hold CR, LF or E1381 control characters")
    return value


def universal_test_code(components: list[str]) -> str:
    """The local test code of a universal test id (``^^^code`` → ``code``).

    Takes the fourth component (manufacturer's local code) and falls back to
    the first non-empty one for instruments that put the code elsewhere.
    """
    if len(components) >= 4 and components[3].strip():
        return components[3].strip()
    for c in components:
        if c.strip():
            return c.strip()
    return ""
