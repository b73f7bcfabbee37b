"""What an accepted message adds to the history the stateful rules read."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .bundle_view import parse_datetime, view_of
from .context import PreviousResult, RuleContext
from .rules_analysis import _value
from .rules_history import bundle_patient_key
from .rules_orders import order_requests


@dataclass(slots=True)
class AcceptedFacts:
    patient: str | None
    results: list[tuple[str, PreviousResult]] = field(default_factory=list)
    orders: list[tuple[str, datetime]] = field(default_factory=list)


def accepted_facts(bundle: dict, ctx: RuleContext, *, result_codes=None) -> AcceptedFacts:
    """Results (canonical unit, no comparator) and orders of a validated bundle,
    keyed by the hashed patient. ``result_codes`` limits results to those
    analyses (e.g. the ones with delta limits). Call after ``validate(...,
    keep_view=True)``: the rules' unit conversion has then been applied."""
    view = view_of(bundle, ctx)
    key = bundle_patient_key(view, ctx)
    facts = AcceptedFacts(key)
    if key is None:
        return facts
    for o in view.results:
        a = o.analysis
        if a is None or (result_codes is not None and a.code not in result_codes):
            continue
        got = _value(o, ctx)
        at = o.effective() or o.collected()
        if got is not None and got[1] is None and at is not None:
            facts.results.append((a.code, PreviousResult(at, got[0], a.canonical_unit)))
    for req in order_requests(view, ctx):
        if req.analysis is not None:
            at = parse_datetime(req.resource.get("authoredOn")) or ctx.now
            facts.orders.append((req.analysis.code, at))
    return facts
