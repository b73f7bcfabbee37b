"""HL7 v2 acknowledgements (ACK) with one ERR segment per finding.

ERR follows the v2.5 layout (DOMAIN.md E11)::

    ERR||<SEG^seq^field>|<HL7 0357 code>^<text>^HL70357|<E/W/I>|<rule code>^<text>^L|||<user text>
"""
from __future__ import annotations

import re
from datetime import datetime

from ..issue import Issue
from . import writer as w

ACK_CODES = {"AA", "AE", "AR", "CA", "CE", "CR"}
DEFAULT_VERSION = "2.5.1"
_CHARSET = {"utf-8": "UNICODE UTF-8", "latin-1": "8859/1", "iso8859-1": "8859/1",
            "ascii": ""}
_SEVERITY = {"fatal": "E", "error": "E", "warning": "W"}
# HL7 table 0357 (message error condition codes) by our rule code.
_HL7_ERROR = {
    "HL7-UNSUPPORTED-MESSAGE-TYPE": ("200", "Unsupported message type"),
    "HL7-MSH-MISSING": ("100", "Segment sequence error"),
    "HL7-OBX-BEFORE-OBR": ("100", "Segment sequence error"),
    "HL7-MULTIPLE-MESSAGES": ("100", "Segment sequence error"),
    "HL7-PID-REPEATED": ("100", "Segment sequence error"),
    "HL7-TOO-MANY-SEGMENTS": ("100", "Segment sequence error"),
    "HL7-TOO-MANY-REPETITIONS": ("104", "Value too long"),
    "HL7-EMPTY": ("101", "Required field missing"),
}
_LOCATION = re.compile(r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+)(?:\.(\d+)(?:\.(\d+))?)?)?\Z")


def error_location(location: str) -> list:
    """An issue location ("PID-3", "OBX[2]-5.1") as ERR-2 ERL components."""
    m = _LOCATION.match(location.strip())
    if not m:
        return []
    seg, seq, field, comp, sub = m.groups()
    return [seg, seq or "1", field or "", "", comp or "", sub or ""]


def _hl7_error(issue: Issue) -> tuple[str, str]:
    if issue.code in _HL7_ERROR:
        return _HL7_ERROR[issue.code]
    if issue.code.endswith("-MISSING"):
        return "101", "Required field missing"
    if issue.severity == "fatal":
        return "207", "Application internal error"
    return "102", "Data type error"


def err_segment(issue: Issue) -> str:
    """One ERR segment for one issue."""
    code, text = _hl7_error(issue)
    return w.segment("ERR", [
        "",
        w.component(error_location(issue.location)),
        w.component([code, text, "HL70357"]),
        _SEVERITY.get(issue.severity, "I"),
        w.component([issue.code, issue.text, "L"]),
        "", "",
        w.component([issue.text_nb or issue.text]),
    ])


def build_ack(header: dict | None, code: str, issues: list[Issue], *, control_id: str,
              timestamp: datetime, sending_app: str = "LABGATE", sending_facility: str = "",
              encoding: str = "utf-8") -> bytes:
    """An ACK to the message whose MSH is ``header`` (None if it could not be read).

    The ACK is sent from the application the message was addressed to (its
    MSH-5/6) back to its sender (MSH-3/4); ``sending_app``/``sending_facility``
    name us when the message named no receiver. Returns the message bytes
    without MLLP framing.
    """
    if code not in ACK_CODES:
        raise ValueError(f"ACK code must be one of {sorted(ACK_CODES)}, not {code!r}")
    h = header or {}
    trigger = h.get("trigger", "")
    version = h.get("version") or DEFAULT_VERSION
    msh = w.msh([
        w.hd(h.get("receiving_app", "")) or w.component([sending_app]),
        w.hd(h.get("receiving_facility", "")) or w.component([sending_facility]),
        w.hd(h.get("sending_app", "")),
        w.hd(h.get("sending_facility", "")),
        w.msh_time(timestamp),
        "",
        w.component(["ACK", trigger, "ACK"]) if trigger else "ACK",
        w.component([control_id]),
        w.component([h.get("processing_id") or "P"]),
        w.component([version]),
        "", "", "", "", "",
        _CHARSET.get(encoding.lower(), ""),
    ])
    segments = [msh, w.segment("MSA", [code, w.component([h.get("control_id", "")])])]
    segments += [err_segment(i) for i in issues if i.severity in _SEVERITY]
    return w.message(segments, encoding)
