"""HL7 v2 DTM/TS values ⇄ FHIR date, dateTime and instant, keeping precision.

A v2 timestamp is ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``. FHIR
requires an offset once a time is given, so a time without one is read in the
sender's zone (``default_tz``, Europe/Oslo for Norwegian senders). FHIR has no
hour-only precision; such values get minute ``00``.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from .. import systems

DEFAULT_TZ = systems.DEFAULT_TZ

_V2_TS = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"([+-]\d{4})?\Z")
_FHIR_DT = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?\Z")


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _offset(v2_offset: str | None, parts: tuple, default_tz: str) -> str:
    if v2_offset:
        return f"{v2_offset[:3]}:{v2_offset[3:]}"
    y, mo, d, h, mi = (int(p) for p in parts[:5])
    off = datetime(y, mo, d, h, mi, tzinfo=_zone(default_tz)).utcoffset() or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@lru_cache(maxsize=4096)     # pure, and called for every timestamp a mapping reads
def _parts(value: str):
    m = _V2_TS.match(value.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:   # reject impossible dates and times (20250231, 2561)
        datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0))
        if off and (int(off[1:3]) > 14 or int(off[3:]) > 59):
            return None
    except ValueError:
        return None
    return y, mo, d, h, mi, s, frac, off


@lru_cache(maxsize=4096)     # a message repeats its timestamps (OBR-7 in every OBX-14)
def to_fhir_datetime(value: str, default_tz: str = DEFAULT_TZ) -> str | None:
    """A v2 timestamp as a FHIR dateTime at its own precision; None if unreadable."""
    p = _parts(value)
    if p is None:
        return None
    y, mo, d, h, mi, s, frac, off = p
    if not mo:
        return y
    if not d:
        return f"{y}-{mo}"
    if not h:
        return f"{y}-{mo}-{d}"
    mi = mi or "00"
    t = f"{y}-{mo}-{d}T{h}:{mi}"
    if s:
        t += f":{s}" + (f".{frac}" if frac else "")
    else:
        t += ":00"
    return t + _offset(off, (y, mo, d, h, mi), default_tz)


@lru_cache(maxsize=4096)
def to_fhir_instant(value: str, default_tz: str = DEFAULT_TZ) -> str | None:
    """A v2 timestamp as a FHIR instant (needs at least minutes); None otherwise."""
    p = _parts(value)
    if p is None or not p[4]:
        return None
    return to_fhir_datetime(value, default_tz)


def to_fhir_date(value: str) -> str | None:
    """The date part of a v2 timestamp as a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)."""
    p = _parts(value)
    if p is None:
        return None
    y, mo, d = p[:3]
    return y if not mo else f"{y}-{mo}" if not d else f"{y}-{mo}-{d}"


def to_v2(value: str) -> str:
    """A FHIR date/dateTime/instant as a v2 DTM, same precision; "" if unreadable."""
    m = _FHIR_DT.match(value.strip())
    if not m:
        return ""
    y, mo, d, h, mi, s, frac, tz = m.groups()
    out = y + (mo or "") + (d or "")
    if h:
        out += h + mi + (s or "")
        if s and frac:
            out += "." + frac[:4]
        if tz:
            out += "+0000" if tz == "Z" else tz.replace(":", "")
    return out


def v2_now(ts: datetime) -> str:
    """A datetime as a v2 DTM with seconds and offset (for MSH-7)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.strftime("%Y%m%d%H%M%S%z")
