"""DELTA-CHECK and ORDER-DUPLICATE against the in-memory history."""
from datetime import timedelta

from gateway.validation import History, PreviousResult, accepted_facts, patient_key, validate

FNR = "13116900216"
KEY = patient_key(FNR)


def _history(*entries):
    """previous_results lookup holding ``(code, hours_before_collection, value, unit)`` rows."""
    from datetime import datetime
    collected = datetime.fromisoformat("2025-03-14T09:25:00+01:00")
    hist = History(lambda p: p.time)
    for code, hours, value, unit in entries:
        hist.add(KEY, code, PreviousResult(collected - timedelta(hours=hours), value, unit))
    return hist.get


def _k(h, value, **kw):
    return h.poc("NPU03230", value, "mmol/L", specimen_type="SER", **kw)


def test_delta_flags_a_change_above_both_limits(h):
    issues = validate(_k(h, 5.9), h.ctx(previous_results=_history(("NPU03230", 24, 3.9, "mmol/L"))))
    assert [(i.code, i.severity) for i in issues] == [("DELTA-CHECK", "warning")]
    assert "1 mmol/L and 25 %" in issues[0].text and "24 h" in issues[0].text
    assert "5.9" not in issues[0].text and "3.9" not in issues[0].text   # no values in texts
    assert "deltagrensen" in issues[0].text_nb


def test_delta_needs_every_limit_exceeded(h):
    # 0.9 mmol/L is under the absolute limit although 30 % is over the relative one
    assert h.codes(_k(h, 3.9), h.ctx(previous_results=_history(("NPU03230", 24, 3.0, "mmol/L")))) == []
    assert h.codes(_k(h, 4.4), h.ctx(previous_results=_history(("NPU03230", 24, 4.0, "mmol/L")))) == []


def test_delta_ignores_old_later_other_unit_and_no_history(h):
    ctx = lambda *rows: h.ctx(previous_results=_history(*rows))   # noqa: E731
    assert h.codes(_k(h, 5.9), ctx(("NPU03230", 80, 3.9, "mmol/L"))) == []    # window 72 h
    assert h.codes(_k(h, 5.9), ctx(("NPU03230", -1, 3.9, "mmol/L"))) == []    # later, not previous
    assert h.codes(_k(h, 5.9), ctx(("NPU03230", 24, 3.9, "mg/L"))) == []      # other unit
    assert h.codes(_k(h, 5.9), ctx(("NPU03429", 24, 3.9, "mmol/L"))) == []    # other analysis
    assert h.codes(_k(h, 5.9), ctx()) == []
    assert h.codes(_k(h, 5.9)) == []                                          # no lookup: skipped


def test_delta_uses_the_newest_previous_result(h):
    rows = (("NPU03230", 48, 3.9, "mmol/L"), ("NPU03230", 12, 5.7, "mmol/L"))
    assert h.codes(_k(h, 5.9), h.ctx(previous_results=_history(*rows))) == []


def test_delta_after_unit_conversion(h):
    # Hb sent in g/L is converted to g/dL before the delta is judged
    b = h.poc("NOR05172", 90, "g/L")
    ctx = h.ctx(previous_results=_history(("NOR05172", 24, 14.0, "g/dL")))
    assert [i.code for i in validate(b, ctx)] == ["UNIT-CONVERTED", "DELTA-CHECK"]


def test_delta_skips_comparator_values(h):
    b = _k(h, 5.9, comparator=">")
    assert "DELTA-CHECK" not in h.codes(b, h.ctx(previous_results=_history(("NPU03230", 24, 3.9, "mmol/L"))))


def _order(h, code="NPU19748", authored="2025-03-14T09:00:00+01:00", extra=None):
    b = h.B()
    pat = b.patient()
    doc = b.practitioner()
    for c in [code, *(extra or [])]:
        b.service_request(pat, requester=doc, code=c)
        b.entries[-1]["resource"]["authoredOn"] = authored
    return b.bundle()


def _orders(*rows):
    from datetime import datetime
    hist = History(lambda t: t)
    for code, at in rows:
        hist.add(KEY, code, datetime.fromisoformat(at))
    return hist.get


def test_duplicate_order_within_window_flagged(h):
    ctx = h.ctx(recent_orders=_orders(("NPU19748", "2025-03-14T06:00:00+01:00")))
    issues = validate(_order(h), ctx)
    assert [(i.code, i.severity) for i in issues] == [("ORDER-DUPLICATE", "warning")]
    assert "3 h" in issues[0].text and "24 h" in issues[0].text


def test_duplicate_order_in_the_same_bundle_flagged(h):
    assert h.codes(_order(h, extra=["NPU19748"]), h.ctx(recent_orders=_orders())) == ["ORDER-DUPLICATE"]


def test_no_duplicate_outside_window_or_other_analysis(h):
    old = h.ctx(recent_orders=_orders(("NPU19748", "2025-03-12T06:00:00+01:00")))
    assert h.codes(_order(h), old) == []
    other = h.ctx(recent_orders=_orders(("NPU03230", "2025-03-14T08:00:00+01:00")))
    assert h.codes(_order(h), other) == []
    short = h.ctx(recent_orders=_orders(("NPU19748", "2025-03-14T06:00:00+01:00")),
                  duplicate_order_window=timedelta(hours=2))
    assert h.codes(_order(h), short) == []


def test_result_bundles_are_not_orders(h):
    # an ORU carries ServiceRequests too; they are not judged as new orders
    ctx = h.ctx(recent_orders=_orders(("NPU19748", "2025-03-14T09:00:00+01:00")))
    assert h.codes(h.poc(), ctx) == []


def test_accepted_facts_hash_the_patient_and_use_canonical_units(h):
    b = h.poc("NOR05172", 115, "g/L")
    ctx = h.ctx()
    validate(b, ctx, keep_view=True)
    facts = accepted_facts(b, ctx)
    assert facts.patient == KEY and FNR not in facts.patient
    [(code, prev)] = facts.results
    assert (code, prev.value, prev.unit) == ("NOR05172", 11.5, "g/dL")
    ctx = h.ctx()
    order = _order(h)
    validate(order, ctx, keep_view=True)
    facts = accepted_facts(order, ctx)
    assert [c for c, _ in facts.orders] == ["NPU19748"] and facts.results == []


def test_history_keeps_newest_first_bounded_and_lru():
    from datetime import datetime
    t0 = datetime.fromisoformat("2025-03-14T09:00:00+01:00")
    hist = History(lambda t: t, max_keys=2, per_key=2)
    for hours in (1, 3, 2):
        hist.add("a", "X", t0 + timedelta(hours=hours))
    assert hist.get("a", "X") == [t0 + timedelta(hours=3), t0 + timedelta(hours=2)]
    hist.add("a", "X", t0 + timedelta(hours=3))                  # the same fact again
    assert len(hist.get("a", "X")) == 2
    hist.add("b", "X", t0)
    hist.get("a", "X")                                           # a is now most recent
    hist.add("c", "X", t0)                                       # evicts b
    assert hist.get("b", "X") == [] and hist.get("a", "X") and hist.get("c", "X")


def test_patient_key_is_a_hash_of_the_number():
    assert patient_key(" 13116900216 ") == patient_key("13116900216") != patient_key("13116900217")
    assert len(patient_key("13116900216")) == 64 and "13116900216" not in patient_key("13116900216")


def test_the_same_order_resent_is_not_a_duplicate(h):
    ctx = h.ctx(recent_orders=_orders(("NPU19748", "2025-03-14T09:00:00+01:00")))
    assert h.codes(_order(h, authored="2025-03-14T09:00:00+01:00"), ctx) == []
