"""The shortcuts validation takes for speed change nothing a rule can see."""
from __future__ import annotations

from datetime import datetime, timezone

from gateway.validation import RULES, RuleContext
from gateway.validation.bundle_view import LOCAL_TZ, parse_datetime
from gateway.validation.registry import run_plan
from mappings.tables_loader import default_tables


def test_fixed_offset_times_keep_their_instant():
    for raw in ("2025-03-14T09:25:00+01:00", "2025-03-14T09:25:00.123456-05:30",
                "2025-03-14T09:25:00Z", "2025-03-14T09:25:00+01:00:30"):
        assert parse_datetime(raw) == datetime.fromisoformat(raw)


def test_local_times_keep_the_norwegian_zone():
    # Same-zone arithmetic on Europe/Oslo times is wall-clock time (DST day: 2 h, not 1 h).
    a, b = parse_datetime("2025-03-30T01:30:00"), parse_datetime("2025-03-30T03:30:00")
    assert a.tzinfo is LOCAL_TZ and b.tzinfo is LOCAL_TZ
    assert (b - a).total_seconds() == 7200


def test_times_at_the_edge_of_the_calendar_still_parse():
    assert parse_datetime("0001-01-01T00:30:00+01:00") == datetime.fromisoformat(
        "0001-01-01T00:30:00+01:00")
    assert parse_datetime("9999-12-31T23:30:00-01:00") is not None


def _ctx(**kw) -> RuleContext:
    return RuleContext(now=datetime(2025, 3, 14, 10, tzinfo=timezone.utc),
                       tables=default_tables(), **kw)


def test_run_plan_applies_settings_and_lookups():
    ctx = _ctx()
    plan = {r.code: sev for r, sev in run_plan({"HPR-FORMAT": "off", "CRITICAL-VALUE": "reject",
                                                "PID-MISSING": "warn"}, ctx)}
    assert "HPR-FORMAT" not in plan
    assert plan["CRITICAL-VALUE"] == "error" and plan["PID-MISSING"] == "warning"
    assert plan["ANALYSIS-UNKNOWN"] is None
    assert not {"DELTA-CHECK", "QC-LOCKOUT", "OPERATOR-NOT-CERTIFIED", "ORDER-DUPLICATE"} & set(plan)
    # Same settings, other lookups: a plan of its own, still in registration order.
    with_lookups = _ctx(previous_results=lambda k, a: [], qc_state=lambda d, a: None,
                        operator_certified={}, recent_orders=lambda k, a: [])
    assert [r.code for r, _ in run_plan({}, with_lookups)] == list(RULES)
    assert "HPR-FORMAT" in {r.code for r, _ in run_plan({}, ctx)}
