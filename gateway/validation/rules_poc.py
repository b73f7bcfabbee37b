"""Point-of-care rules that need state the core holds (DOMAIN.md §4.6, §4.7).

Both are skipped when the RuleContext lacks the lookup they need.
"""
from __future__ import annotations

from datetime import timedelta

from .bundle_view import as_list, BundleView, ObsInfo, view_of
from .registry import rule


def _results(view: BundleView) -> list[ObsInfo]:
    return [o for o in view.results if o.analysis is not None]


def device_id(view: BundleView, obs: dict) -> str | None:
    """The instrument's id: Device.identifier[0].value or serialNumber, or a logical id."""
    ref = obs.get("device")
    if not isinstance(ref, dict):
        return None
    target = view.resolve(ref)
    if target is not None:
        dev = target[1]
        for ident in as_list(dev.get("identifier")):
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                return ident["value"]
        serial = dev.get("serialNumber")
        return serial if isinstance(serial, str) else None
    ident = ref.get("identifier")
    value = ident.get("value") if isinstance(ident, dict) else None
    return value if isinstance(value, str) else None


def _values(identifiers) -> list[str]:
    return [i["value"] for i in as_list(identifiers)
            if isinstance(i, dict) and isinstance(i.get("value"), str)]


def operator_ids(view: BundleView, obs: dict) -> list[str]:
    """Identifier values of the people in Observation.performer."""
    out: list[str] = []
    for ref in as_list(obs.get("performer")):
        if not isinstance(ref, dict):
            continue
        target = view.resolve(ref)
        if target is None:
            if ref.get("type") in (None, "Practitioner", "PractitionerRole"):
                out += _values([ref.get("identifier")])
            continue
        res = target[1]
        if res.get("resourceType") == "PractitionerRole":
            prac = res.get("practitioner")
            inner = view.resolve(prac)
            if inner is not None:
                res = inner[1]
            elif isinstance(prac, dict):
                out += _values([prac.get("identifier")])
                continue
        if res.get("resourceType") == "Practitioner":
            out += _values(res.get("identifier"))
    return out


@rule("QC-LOCKOUT", "error",
      en="Patient result from {device} for {analysis} while QC is {state}.",
      nb="Pasientresultat fra {device} for {analysis} mens kvalitetskontrollen er {state_nb}.",
      needs=("qc_state",))
def qc_lockout(bundle, ctx):
    """The device's last QC for the analysis passed and is within the QC
    interval (qc_intervals.csv), judged at analysis time (else now). Results
    without a device id are not judged."""
    view = view_of(bundle, ctx)
    for o in _results(view):
        dev = device_id(view, o.resource)
        if dev is None:
            continue
        code = o.analysis.code
        state = ctx.qc_state(dev, code)
        at = o.analysis_time() or ctx.now
        interval = ctx.tables.qc_interval_minutes.get(code)
        if state is None or state.last_passed is None:
            why = ("missing", "ikke registrert")
        elif state.last_failed:
            why = ("failed", "underkjent")
        elif interval is not None and at - state.last_passed > timedelta(minutes=interval):
            why = ("overdue", "forfalt")
        else:
            continue
        yield qc_lockout.issue(f"{o.path}.device", device=dev, analysis=code,
                               state=why[0], state_nb=why[1])


@rule("OPERATOR-NOT-CERTIFIED", "error",
      en="The operator of this {analysis} result is unknown or not certified for it.",
      nb="Operatøren for dette {analysis}-resultatet er ukjent eller ikke sertifisert for analysen.",
      needs=("operator_certified",))
def operator_not_certified(bundle, ctx):
    """At least one identifier of a performer is certified for the analysis at
    analysis time (else now). A result with no identified performer fails."""
    view = view_of(bundle, ctx)
    for o in _results(view):
        at = o.analysis_time() or ctx.now
        code = o.analysis.code
        if not any(ctx.is_certified(op, code, at) for op in operator_ids(view, o.resource)):
            yield operator_not_certified.issue(f"{o.path}.performer", analysis=code)
