"""Build the POCT1-A2 XML messages the gateway (data manager) sends.

Every message is ``<TYPE><HDR>…</HDR>…sections…</TYPE>`` with values in the
``V`` attribute (and units in ``U``), as in DOMAIN.md §3.1. The builders
return :class:`Outgoing` (control id, message type, bytes). A
:class:`MessageFactory` hands out HDR control ids that increase by one per
message within one conversation.

Element names marked [K] in DOMAIN.md are not verified against the licensed
CLSI text; they are parameters here so a site can match its devices:

- ACK: ``ACK.type_cd`` + ``ACK.ack_control_id`` (verified). A negative
  acknowledgement (``AE``) carries its error text in ``ACK.note_txt``
  (the POCT1-A ``*.note_txt`` style used for free text elsewhere) [K].
- DTV: the directive code sits in ``DTV.command_cd`` [K]; the code for a
  lock/unlock directive is whatever the site configures (``LOCK``/``UNLOCK``
  by default) [K].
- ESC.R01: ``ESC.esc_cd`` + ``ESC.note_txt`` (+ ``ESC.ref_control_id``) [K].
- END.R01: ``TRM.reason_cd`` (``NRM`` normal, ``ERR`` error, ``TMO``
  timeout) [K], with the reason text in ``TRM.note_txt`` [K].
- OPL.R01: ``OPR.operator_id``, ``OPR.name`` and an ``ACC`` section with
  ``ACC.method_cd`` / ``ACC.permission_level_cd`` inside each ``OPR`` [K
  for the nesting].
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable
from xml.etree.ElementTree import Element, SubElement, tostring

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'
POCT_VERSION = "POCT1"

# Characters XML 1.0 cannot carry at all; dropped so a built message always parses.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (NUL, most C0 controls …)."""
    return _NOT_XML_CHAR.sub("", text)


def field_element(parent: Element, name: str, value: str | None = None,
                  unit: str | None = None, **attrs: str) -> Element:
    """Append ``<name V=value U=unit …/>`` to ``parent`` and return it."""
    el = SubElement(parent, name)
    if value is not None:
        el.set("V", xml_safe(str(value)))
    if unit is not None:
        el.set("U", xml_safe(str(unit)))
    for key, val in attrs.items():
        el.set(key, xml_safe(str(val)))
    return el


def now_iso() -> str:
    """The current local time as ISO 8601 with offset, seconds precision."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def build_message(msg_type: str, control_id: str, creation_dttm: str,
                  fill: Callable[[Element], None] | None = None, *,
                  version: str = POCT_VERSION) -> bytes:
    """Serialise one message: XML declaration, root ``msg_type``, HDR, then
    whatever ``fill(root)`` appends."""
    root = Element(msg_type)
    hdr = SubElement(root, "HDR")
    field_element(hdr, "HDR.control_id", control_id)
    field_element(hdr, "HDR.version_id", version)
    field_element(hdr, "HDR.creation_dttm", creation_dttm)
    if fill is not None:
        fill(root)
    return XML_DECLARATION + tostring(root, encoding="unicode").encode("utf-8")


@dataclass(frozen=True, slots=True)
class AckSpelling:
    """Element names for ACK.R01; vendors differ (DOMAIN.md §3.1)."""
    type_name: str = "ACK.type_cd"
    control_id_name: str = "ACK.ack_control_id"
    note_name: str = "ACK.note_txt"


@dataclass(frozen=True, slots=True)
class Operator:
    """One certified operator pushed to devices in OPL.R01."""
    operator_id: str
    name: str = ""
    permission_level: str = "1"      # vendor example: 4 supervisor, 1 user
    method_cd: str | None = None     # ACC.method_cd, e.g. "PIN" or "BCD" [K]


@dataclass(frozen=True, slots=True)
class OperatorList:
    """A push of the certified operator list: OPL.R01, then EOT.R01 topic OPL."""
    operators: tuple[Operator, ...] = ()


@dataclass(frozen=True, slots=True)
class Directive:
    """A push of one directive (DTV.R01), e.g. ``Directive(LOCK, ...)``.

    ``params`` become ``<name V=value/>`` children of the DTV section, e.g.
    ``(("DTV.target_cd", "CRP"),)`` [K: parameter names are site-specific].
    """
    code: str
    params: tuple[tuple[str, str], ...] = ()


# Directive codes: START_CONTINUOUS and SET_TIME are seen in vendor docs;
# LOCK/UNLOCK are defaults a site overrides to its devices' codes [K].
START_CONTINUOUS = "START_CONTINUOUS"
SET_TIME = "SET_TIME"
LOCK = "LOCK"
UNLOCK = "UNLOCK"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One built message: its own control id, type and wire bytes."""
    control_id: str
    msg_type: str
    data: bytes


@dataclass
class MessageFactory:
    """Builds the gateway's messages with per-conversation control ids.

    ``first_control_id`` is the first HDR.control_id; each message takes the
    next integer. ``clock`` returns the HDR.creation_dttm text.
    """
    first_control_id: int = 1
    clock: Callable[[], str] = now_iso
    ack_spelling: AckSpelling = field(default_factory=AckSpelling)
    directive_name: str = "DTV.command_cd"
    version: str = POCT_VERSION

    def __post_init__(self) -> None:
        self._ids = itertools.count(self.first_control_id)

    def _make(self, msg_type: str, fill: Callable[[Element], None]) -> Outgoing:
        cid = str(next(self._ids))
        data = build_message(msg_type, cid, self.clock(), fill, version=self.version)
        return Outgoing(cid, msg_type, data)

    def ack(self, ack_control_id: str, *, accepted: bool = True,
            note: str | None = None) -> Outgoing:
        """ACK.R01: ``AA`` or ``AE`` for the device message ``ack_control_id``."""
        names = self.ack_spelling

        def fill(root: Element) -> None:
            ack = SubElement(root, "ACK")
            field_element(ack, names.type_name, "AA" if accepted else "AE")
            field_element(ack, names.control_id_name, ack_control_id)
            if note:
                field_element(ack, names.note_name, note)
        return self._make("ACK.R01", fill)

    def operator_list(self, operators: Iterable[Operator]) -> Outgoing:
        """OPL.R01 with one OPR section per operator."""
        ops = list(operators)

        def fill(root: Element) -> None:
            for op in ops:
                opr = SubElement(root, "OPR")
                field_element(opr, "OPR.operator_id", op.operator_id)
                if op.name:
                    field_element(opr, "OPR.name", op.name)
                acc = SubElement(opr, "ACC")
                if op.method_cd:
                    field_element(acc, "ACC.method_cd", op.method_cd)
                field_element(acc, "ACC.permission_level_cd", op.permission_level)
        return self._make("OPL.R01", fill)

    def directive(self, directive: Directive) -> Outgoing:
        """DTV.R01 carrying one directive code and its parameters."""
        def fill(root: Element) -> None:
            dtv = SubElement(root, "DTV")
            field_element(dtv, self.directive_name, directive.code)
            for name, value in directive.params:
                field_element(dtv, name, value)
        return self._make("DTV.R01", fill)

    def end_of_topic(self, topic: str) -> Outgoing:
        """EOT.R01 closing ``topic`` (e.g. "OPL")."""
        return self._make("EOT.R01", lambda root: field_element(
            SubElement(root, "EOT"), "EOT.topic_cd", topic))

    def terminate(self, reason_cd: str = "NRM", note: str | None = None) -> Outgoing:
        """END.R01 with TRM.reason_cd and an optional TRM.note_txt."""
        def fill(root: Element) -> None:
            trm = SubElement(root, "TRM")
            field_element(trm, "TRM.reason_cd", reason_cd)
            if note:
                field_element(trm, "TRM.note_txt", note)
        return self._make("END.R01", fill)

    def escape(self, code: str, note: str, ref_control_id: str | None = None) -> Outgoing:
        """ESC.R01: the gateway could not process a message (reason in ESC.note_txt)."""
        def fill(root: Element) -> None:
            esc = SubElement(root, "ESC")
            field_element(esc, "ESC.esc_cd", code)
            if ref_control_id:
                field_element(esc, "ESC.ref_control_id", ref_control_id)
            field_element(esc, "ESC.note_txt", note)
        return self._make("ESC.R01", fill)
