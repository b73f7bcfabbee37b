"""Instrument value, unit and time strings (ASTM, POCT1-A) as FHIR-ready values:
numbers with comparators, UCUM units, dateTimes with an offset."""
from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from mappings.hl7v2.timestamps import to_fhir_datetime

# Device unit spellings -> UCUM (DOMAIN.md §1.5: 10E9/L, 10#9/L for 10⁹/L).
UCUM_SPELLINGS = {
    "10E9/L": "10*9/L", "10#9/L": "10*9/L", "10^9/L": "10*9/L", "x10E9/L": "10*9/L",
    "10E12/L": "10*12/L", "10#12/L": "10*12/L", "10^12/L": "10*12/L",
    "µmol/L": "umol/L", "μmol/L": "umol/L", "mmol/l": "mmol/L", "mg/l": "mg/L",
    "g/dl": "g/dL", "g/l": "g/L", "ng/l": "ng/L",
}
# Units devices send for unitless results such as INR.
UNITLESS = frozenset({"", "0", "1", "INR", "ratio"})

_NUMBER = re.compile(r"^\s*(<=|>=|<|>)?\s*([+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)\s*$")


def ucum(unit: str | None) -> str | None:
    """The UCUM code for a device unit (unchanged when already UCUM or unknown)."""
    if unit is None:
        return None
    unit = unit.strip()
    return UCUM_SPELLINGS.get(unit, unit)


def same_unit(device_unit: str | None, expected: str | None, aliases=()) -> bool:
    """True when the device's unit means the code map's unit (or either is absent);
    ``aliases`` are the code map's other spellings of that unit (``unit_aliases``)."""
    if not expected or device_unit is None or device_unit in aliases:
        return True
    got, want = ucum(device_unit), ucum(expected)
    if want == "1":
        return got in UNITLESS
    return got == want or got.casefold() == want.casefold()


MAX_NUMBER_CHARS = 40


def parse_number(text: str) -> tuple[str | None, int | float] | None:
    """``"27"`` -> (None, 27); ``"<5,5"`` -> ("<", 5.5); None when not a number."""
    m = _NUMBER.match(text)
    if m is None:
        return None
    digits = m.group(2).replace(",", ".")
    if len(digits) > MAX_NUMBER_CHARS:      # no lab value has this many digits; hostile input
        return None
    number = float(digits)
    if re.fullmatch(r"[+-]?\d+", digits):
        number = int(digits)
    return m.group(1), number


_COMPACT = re.compile(r"\d{4,14}(\.\d+)?([+-]\d{4})?")


def parse_datetime(text: str, default_tz: str) -> tuple[str | None, bool]:
    """An ISO 8601 / compact device time as FHIR dateTime text, at its own precision.

    Compact all-digit times (``YYYYMMDD[HHMM[SS]][+ZZZZ]``) are read as HL7 v2
    timestamps are (mappings.hl7v2.timestamps); ISO text with a time (``T``)
    by ``datetime.fromisoformat``; a date alone stays a date (no invented time).
    Returns (value, assumed_zone): value None when unreadable; assumed_zone
    True when the device gave a time without an offset and ``default_tz`` was applied.
    """
    text = text.strip()
    if _COMPACT.fullmatch(text):
        value = to_fhir_datetime(text, default_tz)
        has_time = value is not None and "T" in value
        return value, has_time and not re.search(r"[+-]\d{4}$", text)
    if "T" not in text:
        try:
            return date.fromisoformat(text).isoformat(), False
        except ValueError:
            return None, False
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, False
    assumed = dt.tzinfo is None
    if assumed:
        dt = dt.replace(tzinfo=ZoneInfo(default_tz))
    spec = "microseconds" if dt.microsecond else "seconds"
    return dt.isoformat(timespec=spec), assumed
