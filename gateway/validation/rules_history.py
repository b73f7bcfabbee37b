"""Rules that compare a message with what the gateway accepted before:
delta checks on results and duplicate orders (DOMAIN.md §4.5, issue 5 Orders).

Both read synchronous lookups on the RuleContext (``previous_results``,
``recent_orders``) and are skipped without them. The patient is keyed by
:func:`history.patient_key` of the bundle's first person identifier.
"""
from __future__ import annotations

from datetime import timedelta

from .bundle_view import BundleView, parse_datetime, view_of
from .history import patient_key
from .registry import rule
from .rules_analysis import _value
from .rules_orders import order_requests
from .rules_patient import person_ids


def bundle_patient_key(view: BundleView, ctx) -> str | None:
    """Hashed key of the first person identifier (Patient first, then logical subjects)."""
    if view.patient_key is False:
        ids = person_ids(view, ctx)
        view.patient_key = patient_key(ids[0].value) if ids else None
    return view.patient_key


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.0f}"


@rule("DELTA-CHECK", "warning",
      en="{analysis} changed more than the delta-check limit ({limits}) since the previous "
         "result {hours} h earlier: check for a mix-up or contamination.",
      nb="{analysis} har endret seg mer enn deltagrensen ({limits}) siden forrige svar for "
         "{hours} t siden: kontroller for prøveforveksling eller kontaminasjon.",
      needs=("previous_results",))
def delta_check(bundle, ctx):
    """A numeric result of an analysis in delta_checks.csv differs from the same
    patient's newest earlier result (within window_minutes before this
    collection time, same canonical unit) by more than every limit on the row
    (absolute in the canonical unit, relative in percent of the earlier value)."""
    table = ctx.tables.delta
    view = view_of(bundle, ctx)
    key = None
    for o in view.results:
        a = o.analysis
        lim = table.get(a.code) if a is not None else None
        if lim is None:
            continue
        got = _value(o, ctx)
        at = o.collected()
        if got is None or got[1] is not None or at is None:
            continue
        if key is None:
            key = bundle_patient_key(view, ctx)
            if key is None:
                return
        window = timedelta(minutes=lim.window_minutes)
        prev = next((p for p in ctx.previous_results(key, a.code)
                     if p.time < at and at - p.time <= window and p.unit == a.canonical_unit),
                    None)
        if prev is None:
            continue
        diff = abs(got[0] - prev.value)
        over_abs = lim.max_abs is None or diff > lim.max_abs
        over_rel = lim.max_rel is None or (
            diff > 0 if prev.value == 0 else diff / abs(prev.value) * 100 > lim.max_rel)
        if over_abs and over_rel:
            limits = " and ".join(x for x in (
                f"{lim.max_abs:g} {a.canonical_unit}" if lim.max_abs is not None else "",
                f"{lim.max_rel:g} %" if lim.max_rel is not None else "") if x)
            yield delta_check.issue(f"{o.path}.valueQuantity.value", analysis=a.code,
                                    limits=limits, hours=_hours(at - prev.time))


@rule("ORDER-DUPLICATE", "warning",
      en="{analysis} was already ordered for this patient {hours} h earlier "
         "(duplicate-order window {window} h).",
      nb="{analysis} er allerede rekvirert for denne pasienten for {hours} t siden "
         "(vindu for dobbeltrekvirering {window} t).",
      needs=("recent_orders",))
def order_duplicate(bundle, ctx):
    """An order (ServiceRequest in a bundle without results) for an analysis the
    same patient already has an order for within the configured window
    ([validation] duplicate_order_window_hours), earlier or in the same bundle."""
    view = view_of(bundle, ctx)
    orders = order_requests(view, ctx)
    if not orders:
        return
    key = bundle_patient_key(view, ctx)
    if key is None:
        return
    window = ctx.duplicate_order_window
    seen: dict[str, object] = {}
    for req in orders:
        if req.analysis is None:
            continue
        at = parse_datetime(req.resource.get("authoredOn")) or ctx.now
        code = req.analysis.code
        # Strictly earlier: the same order resent (same authoredOn) is not a duplicate.
        earlier = [t for t in ctx.recent_orders(key, code) if t < at and at - t <= window]
        if code in seen:
            earlier.append(at)
        seen[code] = True
        if earlier:
            yield order_duplicate.issue(f"Bundle.entry[{req.index}].resource.code",
                                        analysis=code, hours=_hours(at - max(earlier)),
                                        window=_hours(window))
