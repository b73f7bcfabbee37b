"""No patient identifier, name or result value reaches a log line."""
from __future__ import annotations

import io
import json

import structlog

from gateway import logging as log_setup
from support import oru_r01


def _capture(**event):
    buf = io.StringIO()
    log_setup.configure("debug", json=True, stream=buf)
    structlog.get_logger("t").info("something.happened", **event)
    return buf.getvalue()


def test_sensitive_keys_are_redacted():
    line = _capture(patient_id="13116900216", name="Danser^Line", value="7.1", source="poc")
    event = json.loads(line)
    assert event["patient_id"] == event["name"] == event["value"] == "[redacted]"
    assert event["source"] == "poc"


def test_person_numbers_are_scrubbed_from_any_string():
    line = _capture(detail="lookup failed for 13116900216 and 410190 44120", note={"x": "fnr 12057900499"})
    assert "13116900216" not in line and "44120" not in line and "12057900499" not in line
    assert "[redacted]" in line


def test_payloads_are_never_logged():
    raw = oru_r01("LOG-1").decode()
    line = _capture(detail=f"could not map {raw}", data=raw.encode(), error=ValueError(raw).args[0])
    assert "Danser" not in line and "13116900216" not in line and "27" not in json.loads(line)["detail"]


def test_exception_text_is_scrubbed():
    buf = io.StringIO()
    log_setup.configure("debug", json=True, stream=buf)
    try:
        raise ValueError("bad PID|1||13116900216^^^FREG||Danser^Line")
    except ValueError:
        structlog.get_logger("t").exception("mapping.failed")
    assert "13116900216" not in buf.getvalue() and "Danser" not in buf.getvalue()
