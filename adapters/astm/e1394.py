"""ASTM E1394 / CLSI LIS02-A2 messages: parse to a small tree, build back.

A message runs from an H (header) record to an L (terminator) record::

    H
      P  patient                      (several per message)
        O  order / specimen           (several per patient)
          R  result                   (several per order)
            C  comment, M manufacturer, S scientific (attach to the record before)
      Q  request-information (host query)
    L

Orders without a patient (a QC run) hang under a :class:`Patient` whose
``record`` is None; results without an order likewise under an
:class:`Order` whose ``record`` is None. Neither is written back out.
Record fields are read by ASTM position with :meth:`Record.get`
(``order.record.get(3)`` is O-3, the specimen id).

Problems that do not stop parsing (no L record, unknown record types,
records out of place) are collected in ``AstmMessage.problems`` as
``(code, text)`` pairs; the texts never quote field contents.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .records import (AstmParseError, Delimiters, Record, split_header, split_record,
                      universal_test_code)

__all__ = ["AstmMessage", "AstmParseError", "Delimiters", "Order", "Patient", "Record",
           "Result", "build_message", "build_records", "parse_message", "parse_messages"]

DEFAULT_ENCODING = "latin-1"


@dataclass
class Result:
    """An R record with the C/M/S records that follow it."""
    record: Record
    comments: list[Record] = field(default_factory=list)
    other: list[Record] = field(default_factory=list)

    @property
    def test_code(self) -> str:
        """The instrument's local test code (R-3)."""
        return universal_test_code(self.record.components(3))

    @property
    def value(self) -> str:
        """R-4 as sent (first component)."""
        return self.record.get(4)

    @property
    def units(self) -> str:
        """R-5 as sent."""
        return self.record.get(5)


@dataclass
class Order:
    """An O record (None when results came without one) and its results."""
    record: Record | None
    results: list[Result] = field(default_factory=list)
    comments: list[Record] = field(default_factory=list)
    other: list[Record] = field(default_factory=list)

    @property
    def specimen_id(self) -> str:
        """O-3, first component."""
        return self.record.get(3).strip() if self.record else ""


@dataclass
class Patient:
    """A P record (None when orders came without one) and its orders."""
    record: Record | None
    orders: list[Order] = field(default_factory=list)
    comments: list[Record] = field(default_factory=list)
    other: list[Record] = field(default_factory=list)


@dataclass
class AstmMessage:
    """One message, H .. L."""
    header: Record
    delimiters: Delimiters = field(default_factory=Delimiters)
    patients: list[Patient] = field(default_factory=list)
    queries: list[Record] = field(default_factory=list)
    comments: list[Record] = field(default_factory=list)
    other: list[Record] = field(default_factory=list)
    terminator: Record | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def processing_id(self) -> str:
        """H-12 (P production, T training, D debug, Q quality control)."""
        return self.header.get(12).strip().upper()

    @property
    def control_id(self) -> str:
        """H-3, the message control id (often empty)."""
        return self.header.text(3)

    def results(self):
        """Every (patient, order, result) in document order."""
        for p in self.patients:
            for o in p.orders:
                for r in o.results:
                    yield p, o, r


# -- parsing --------------------------------------------------------------

def _lines(text: str) -> list[str]:
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [ln for ln in text.split("\r") if ln.strip()]


def _decode(data: bytes | str, encoding: str) -> str:
    if isinstance(data, str):
        return data
    return data.decode(encoding, errors="replace")


def parse_messages(data: bytes | str, *, encoding: str = DEFAULT_ENCODING,
                   lenient_escapes: bool = True) -> list[AstmMessage]:
    """Every message (H .. L) in ``data``; records end with CR, LF or CR LF.

    Raises :class:`AstmParseError` when there is no H record at all.
    Records before the first H are skipped (noted in the next message's
    problems).
    """
    lines = _lines(_decode(data, encoding))
    messages: list[AstmMessage] = []
    builder: _TreeBuilder | None = None
    skipped = 0
    for line in lines:
        if line.lstrip()[:1] in ("H", "h"):
            if builder is not None:
                messages.append(builder.finish())
            builder = _TreeBuilder(line.lstrip(), lenient_escapes)
            if skipped:
                builder.problem("ASTM-RECORD-BEFORE-HEADER",
                                f"{skipped} record(s) before the H record ignored")
                skipped = 0
        elif builder is None or builder.closed:
            skipped += 1
            if builder is not None:
                messages.append(builder.finish())
                builder = None
        else:
            builder.add(line)
    if builder is not None:
        messages.append(builder.finish())
    if not messages:
        raise AstmParseError("no H (header) record")
    return messages


def parse_message(data: bytes | str, *, encoding: str = DEFAULT_ENCODING,
                  lenient_escapes: bool = True) -> AstmMessage:
    """The first message in ``data`` (see :func:`parse_messages`)."""
    messages = parse_messages(data, encoding=encoding, lenient_escapes=lenient_escapes)
    if len(messages) > 1:
        messages[0].problems.append(("ASTM-EXTRA-MESSAGES",
                                     f"{len(messages) - 1} further message(s) ignored"))
    return messages[0]


class _TreeBuilder:
    """Places records in the tree as they come."""

    def __init__(self, header_line: str, lenient: bool) -> None:
        self.delims = Delimiters.from_header(header_line)
        self.lenient = lenient
        self.msg = AstmMessage(header=Record(split_header(header_line, self.delims, lenient)),
                               delimiters=self.delims)
        self.closed = False
        self.attach_to: object = self.msg     # where C/M/S records go

    def problem(self, code: str, text: str) -> None:
        self.msg.problems.append((code, text))

    def add(self, line: str) -> None:
        record = Record(split_record(line, self.delims, self.lenient))
        handler = {"P": self._patient, "O": self._order, "R": self._result,
                   "Q": self._query, "L": self._terminator,
                   "C": self._comment}.get(record.type, self._other)
        handler(record)

    def _patient(self, record: Record) -> None:
        self.msg.patients.append(Patient(record))
        self.attach_to = self.msg.patients[-1]

    def _current_patient(self) -> Patient:
        if not self.msg.patients:
            self.msg.patients.append(Patient(None))
        return self.msg.patients[-1]

    def _order(self, record: Record) -> None:
        patient = self._current_patient()
        patient.orders.append(Order(record))
        self.attach_to = patient.orders[-1]

    def _result(self, record: Record) -> None:
        patient = self._current_patient()
        if not patient.orders:
            self.problem("ASTM-RESULT-WITHOUT-ORDER", "R record before any O record")
            patient.orders.append(Order(None))
        patient.orders[-1].results.append(Result(record))
        self.attach_to = patient.orders[-1].results[-1]

    def _query(self, record: Record) -> None:
        self.msg.queries.append(record)
        self.attach_to = self.msg

    def _terminator(self, record: Record) -> None:
        self.msg.terminator = record
        self.closed = True

    def _comment(self, record: Record) -> None:
        self.attach_to.comments.append(record)

    def _other(self, record: Record) -> None:
        if record.type not in ("M", "S"):
            self.problem("ASTM-UNKNOWN-RECORD",
                         f"record of unknown type {record.type!r} kept as is")
        self.attach_to.other.append(record)

    def finish(self) -> AstmMessage:
        if self.msg.terminator is None:
            self.problem("ASTM-NO-TERMINATOR", "message has no L (terminator) record")
        return self.msg


# -- building -------------------------------------------------------------

def _walk(msg: AstmMessage):
    yield msg.header
    yield from msg.comments
    yield from msg.other
    for p in msg.patients:
        if p.record is not None:
            yield p.record
        yield from p.comments
        yield from p.other
        for o in p.orders:
            if o.record is not None:
                yield o.record
            yield from o.comments
            yield from o.other
            for r in o.results:
                yield r.record
                yield from r.comments
                yield from r.other
    yield from msg.queries
    if msg.terminator is not None:
        yield msg.terminator


def build_records(records: list[Record | list], delimiters: Delimiters | None = None,
                  *, encoding: str = DEFAULT_ENCODING) -> bytes:
    """Encode records (``Record`` or plain value lists) as CR-terminated lines.

    Raises ValueError for values holding CR, LF or E1381 control characters.
    """
    d = delimiters or Delimiters()
    lines = []
    for r in records:
        rec = r if isinstance(r, Record) else Record.from_values(r)
        lines.append(rec.encode(d) + "\r")
    return "".join(lines).encode(encoding)


def build_message(msg: AstmMessage, *, encoding: str = DEFAULT_ENCODING) -> bytes:
    """Encode a message tree back to records, in tree order."""
    return build_records(list(_walk(msg)), msg.delimiters, encoding=encoding)
