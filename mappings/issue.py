"""The one shape every finding about a message takes, from parser to rule.

An ``Issue`` is what a parser, a mapping or a validation rule says about a
message. The verdict of a message is the list of its issues; any issue with
severity ``fatal`` or ``error`` rejects the message. Every edge renders the
same issues in its own protocol: HL7 v2 ERR segments, FHIR OperationOutcome
issues, ASTM/POCT1-A negative acknowledgements, and the console.
"""
from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("fatal", "error", "warning", "information")
REJECTING = frozenset({"fatal", "error"})


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str   # one of SEVERITIES (FHIR OperationOutcome.issue.severity)
    code: str       # stable rule code, e.g. "HL7-MSH-MISSING", "FNR-MOD11"
    location: str   # protocol location ("PID-3", "OBX[2]-5") or FHIRPath
    text: str       # readable English
    text_nb: str = ""  # readable Norwegian bokmål, where the rule has one

    @property
    def rejects(self) -> bool:
        return self.severity in REJECTING

    def to_dict(self) -> dict:
        d = {"severity": self.severity, "code": self.code,
             "location": self.location, "text": self.text}
        if self.text_nb:
            d["text_nb"] = self.text_nb
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Issue":
        return cls(d["severity"], d["code"], d.get("location", ""),
                   d.get("text", ""), d.get("text_nb", ""))


def rejects(issues) -> bool:
    """True when any issue in ``issues`` rejects the message."""
    return any(i.severity in REJECTING for i in issues)
