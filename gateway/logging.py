"""structlog set-up, with the one processor that keeps patient data out of logs.

Every event passes :func:`redact` last before rendering. It removes values
under keys that may hold patient data, and scrubs anything that looks like a
Norwegian person number or an HL7/ASTM payload from every string, so a
careless ``log.info(..., detail=str(exc))`` cannot leak a fødselsnummer.
"""
from __future__ import annotations

import logging
import re
import sys

import structlog

REDACTED = "[redacted]"

# Keys whose values are patient data (names, identifiers, results, payloads).
SENSITIVE_KEYS = frozenset({
    "patient", "patient_id", "patient_name", "name", "given", "family",
    "fnr", "dnr", "identifier", "identifiers", "ssn", "birth_date", "birthdate",
    "value", "values", "result", "results", "raw", "message", "payload", "body",
    "bundle", "content", "segment", "segments", "record", "records",
})
_PERSON_NUMBER = re.compile(r"(?<!\d)\d{6}\s?\d{5}(?!\d)")   # FNR/DNR/HNR/FHNR shapes
_PAYLOAD = re.compile(r"(MSH\||PID\||OBX\||<\?xml|H\|\\\^&|P\|\d)")


def redact(_logger, _method, event: dict) -> dict:
    for key in list(event):
        if key in ("event", "level", "timestamp", "logger"):
            if key == "event" and isinstance(event[key], str):
                event[key] = _scrub(event[key])
            continue
        if key.lower() in SENSITIVE_KEYS:
            event[key] = REDACTED
        else:
            event[key] = _scrub_value(event[key])
    return event


def _scrub_value(value):
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub_value(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v) for v in value]
    return value


def _scrub(text: str) -> str:
    if _PAYLOAD.search(text):
        return REDACTED
    return _PERSON_NUMBER.sub(REDACTED, text)


def configure(level: str = "info", json: bool | None = None, stream=None) -> None:
    """JSON lines when not on a terminal (or when ``json`` is True)."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer = (structlog.processors.JSONRenderer() if json
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get(name: str = "labgate"):
    return structlog.get_logger(name)
