"""Analysis, unit, specimen-type and value rules (DOMAIN.md §1.5, §4.4, §4.5).

Values are compared in the analysis's canonical unit, so these rules run
after UNIT-CONVERTED and only look at values whose unit is accepted.
"""
from __future__ import annotations

from mappings.systems import UCUM, V2_0487, SPECIMEN_TYPE_8351
from mappings.tables_loader import Analysis

from .bundle_view import as_list, ObsInfo, codings, number, specimen_system, view_of
from .fhir_ext import (CRITICAL_HIGH, CRITICAL_LOW, INTERPRETATION_SYSTEM,
                       NOTIFY_TAG_SYSTEM, PHONE_NOTIFY_TAG)
from .registry import rule

_SPECIMEN_SYSTEMS = (SPECIMEN_TYPE_8351, V2_0487)
_SYSTEM_LABEL = {SPECIMEN_TYPE_8351: "8351", V2_0487: "0487"}


def _results(bundle, ctx):
    """Observations that are results (not panel headers)."""
    return view_of(bundle, ctx).results


def _unit_of(vq: dict) -> str | None:
    u = vq.get("code") or vq.get("unit")
    return u.strip() if isinstance(u, str) and u.strip() else None


def accepted_unit(a: Analysis, vq: dict, ctx) -> str | None:
    """The UCUM unit of ``vq`` if the analysis accepts it as is, else None."""
    raw = _unit_of(vq)
    if raw is None:
        return a.canonical_unit if a.canonical_unit == "1" else None
    u = ctx.tables.ucum(raw)
    return u if u in a.units else None


_NONE = object()


def _accepted(o: ObsInfo, ctx) -> str | None:
    """accepted_unit for a result, memoised until its value changes."""
    got = o.memo.get("unit", _NONE)
    if got is _NONE:
        vq = o.value_quantity()
        got = accepted_unit(o.analysis, vq, ctx) if vq is not None else None
        o.memo["unit"] = got
    return got


@rule("ANALYSIS-UNKNOWN", "error",
      en="Analysis code {codes} is not in the analysis table (NLK, or LOINC where NLK has none).",
      nb="Analysekoden {codes} finnes ikke i analysetabellen (NLK, eller LOINC der NLK mangler kode).")
def analysis_unknown(bundle, ctx):
    """Every result is coded with an NLK code (any of its three system spellings)
    in analyses.csv, or with a LOINC code that names exactly one row there."""
    for o in _results(bundle, ctx):
        if o.analysis is None:
            yield analysis_unknown.issue(f"{o.path}.code",
                                         codes=", ".join(o.codes) or "(none)")


def _convert(value: float, factor: float) -> float:
    # Round away binary noise (11.200000000000001) without losing precision.
    return float(f"{value * factor:.12g}")


def _convert_quantity(q: dict, factor: float, unit: str) -> None:
    v = number(q.get("value"))
    if v is not None:
        q["value"] = _convert(v, factor)
    q["unit"] = unit
    q["code"] = unit
    q["system"] = UCUM


@rule("UNIT-CONVERTED", "information",
      en="Value converted from {src} to {dst} for {analysis}.",
      nb="Verdien er regnet om fra {src} til {dst} for {analysis}.")
def unit_converted(bundle, ctx):
    """A unit the analysis does not accept but that converts safely
    (unit_conversions.csv) is converted in place, with its reference range."""
    conversions = ctx.tables.conversions
    for o in _results(bundle, ctx):
        a, vq = o.analysis, o.value_quantity()
        if a is None or vq is None or not a.units or _accepted(o, ctx):
            continue
        raw = _unit_of(vq)
        src = ctx.tables.ucum(raw) if raw else None
        factor = conversions.get((a.code, src)) if src else None
        if factor is None:
            continue
        _convert_quantity(vq, factor, a.canonical_unit)
        o.memo.clear()
        for rr in as_list(o.resource.get("referenceRange")):
            for end in ("low", "high"):
                q = rr.get(end) if isinstance(rr, dict) else None
                if isinstance(q, dict) and ctx.tables.ucum(_unit_of(q) or "") == src:
                    _convert_quantity(q, factor, a.canonical_unit)
        yield unit_converted.issue(f"{o.path}.valueQuantity", src=src,
                                   dst=a.canonical_unit, analysis=a.code)


@rule("UNIT-NOT-ALLOWED", "error",
      en="Unit {unit} is not allowed for {analysis} (expected {expected}).",
      nb="Enheten {unit} er ikke tillatt for {analysis} (forventet {expected}).")
def unit_not_allowed(bundle, ctx):
    """A numeric result carries a unit the analysis accepts (after any safe conversion)."""
    for o in _results(bundle, ctx):
        a, vq = o.analysis, o.value_quantity()
        if a is None or vq is None or not a.units:
            continue
        u = _accepted(o, ctx)
        if u is None:
            yield unit_not_allowed.issue(f"{o.path}.valueQuantity",
                                         unit=_unit_of(vq) or "(none)", analysis=a.code,
                                         expected=a.canonical_unit)
        elif vq.get("code") != u:
            vq["code"] = u          # normalise the spelling to UCUM, quietly
            vq["system"] = UCUM


def _specimen_codes(view, o: ObsInfo) -> list[tuple[str, str]]:
    """(system, code) of the result's specimen type in 8351 or 0487, read once per
    Specimen (a panel's results usually share one)."""
    key = ("specimen_codes", o.specimen_index)
    out = view.memo.get(key)
    if out is None:
        out = []
        for c in codings(o.specimen.get("type") if o.specimen is not None else None):
            system = specimen_system(c.get("system"))
            if system in _SPECIMEN_SYSTEMS and isinstance(c.get("code"), str):
                out.append((system, c["code"]))
        view.memo[key] = out
    return out


@rule("SPECIMEN-TYPE-MISSING", "warning",
      en="No specimen type (volven 8351 or HL7 0487) is given for {analysis}.",
      nb="Prøvemateriale (volven 8351 eller HL7 0487) mangler for {analysis}.")
def specimen_type_missing(bundle, ctx):
    """A result whose analysis lists specimen types has a coded specimen type."""
    view = view_of(bundle, ctx)
    for o in view.results:
        a = o.analysis
        if a is not None and a.specimen_types and not _specimen_codes(view, o):
            loc = (f"Bundle.entry[{o.specimen_index}].resource.type" if o.specimen
                   else f"{o.path}.specimen")
            yield specimen_type_missing.issue(loc, analysis=a.code)


@rule("SPECIMEN-TYPE-MISMATCH", "error",
      en="Specimen type {given} does not fit {analysis}.",
      nb="Prøvematerialet {given} passer ikke til {analysis}.")
def specimen_type_mismatch(bundle, ctx):
    """The specimen type is one that analyses.csv lists for the analysis."""
    view = view_of(bundle, ctx)
    for o in view.results:
        a = o.analysis
        if a is None or not a.specimen_types:
            continue
        given = _specimen_codes(view, o)
        if given and a.specimen_types.isdisjoint(given):
            label = ", ".join(f"{_SYSTEM_LABEL[s]}:{c}" for s, c in given)
            yield specimen_type_mismatch.issue(
                f"Bundle.entry[{o.specimen_index}].resource.type", given=label, analysis=a.code)


def _value(o: ObsInfo, ctx) -> tuple[float, str | None] | None:
    """(value, comparator) of a result in the canonical unit, or None (memoised)."""
    got = o.memo.get("value", _NONE)
    if got is _NONE:
        got = None
        a, vq = o.analysis, o.value_quantity()
        if a is not None and vq is not None and a.units and _accepted(o, ctx) is not None:
            v = number(vq.get("value"))
            cmp = vq.get("comparator")
            if v is not None and cmp in (None, "<", "<=", ">", ">="):
                got = (v, cmp)
        o.memo["value"] = got
    return got


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"


def _unit(a: Analysis) -> str:
    return "" if a.canonical_unit == "1" else " " + a.canonical_unit


@rule("VALUE-IMPLAUSIBLE", "error",
      en="Value for {analysis} is outside the physiologically possible range {low}–{high}{unit}.",
      nb="Verdien for {analysis} er utenfor fysiologisk mulig område {low}–{high}{unit}.")
def value_implausible(bundle, ctx):
    """A numeric result lies within the analysis's plausible range. A value
    with a comparator is only judged on the side it bounds (">8" can be too high)."""
    for o in _results(bundle, ctx):
        got = _value(o, ctx)
        if got is None:
            continue
        a, (v, cmp) = o.analysis, got
        low, high = a.plausible_low, a.plausible_high
        too_low = low is not None and cmp in (None, "<", "<=") and v < low
        too_high = high is not None and cmp in (None, ">", ">=") and v > high
        if too_low or too_high:
            yield value_implausible.issue(f"{o.path}.valueQuantity.value", analysis=a.code,
                                          low=_fmt(low), high=_fmt(high), unit=_unit(a))


def critical_side(a: Analysis, v: float, cmp: str | None) -> str | None:
    """"low", "high" or None: which critical limit the value crosses."""
    inc = a.critical_inclusive
    cl, ch = a.critical_low, a.critical_high
    if cl is not None and cmp in (None, "<", "<="):
        if v < cl or (v == cl and (inc or cmp == "<")):
            return "low"
    if ch is not None and cmp in (None, ">", ">="):
        if v > ch or (v == ch and (inc or cmp == ">")):
            return "high"
    return None


def mark_critical(obs: dict, side: str) -> None:
    """Set interpretation HH/LL and the phone-notification tag (idempotent)."""
    flag = CRITICAL_LOW if side == "low" else CRITICAL_HIGH
    old = obs.get("interpretation")
    kept = [c for c in (old if isinstance(old, list) else ())
            if not any(x.get("system") == INTERPRETATION_SYSTEM for x in codings(c))]
    obs["interpretation"] = [{"coding": [dict(flag)]}, *kept]
    if not isinstance(obs.get("meta"), dict):
        obs["meta"] = {}
    meta = obs["meta"]
    if not isinstance(meta.get("tag"), list):
        meta["tag"] = []
    tags = meta["tag"]
    if not any(isinstance(t, dict) and t.get("system") == NOTIFY_TAG_SYSTEM
               and t.get("code") == PHONE_NOTIFY_TAG["code"] for t in tags):
        tags.append(dict(PHONE_NOTIFY_TAG))


@rule("CRITICAL-VALUE", "warning",
      en="Critical {side} value for {analysis} (limit {limit}{unit}): notify the requester by phone.",
      nb="Kritisk {side_nb} verdi for {analysis} (grense {limit}{unit}): varsle rekvirent på telefon.")
def critical_value(bundle, ctx):
    """A result beyond a critical limit (ringegrense) is accepted but flagged:
    interpretation set to HH/LL and meta.tag urn:labgate:notification#phone added."""
    for o in _results(bundle, ctx):
        got = _value(o, ctx)
        if got is None:
            continue
        a = o.analysis
        side = critical_side(a, *got)
        if side is None:
            continue
        mark_critical(o.resource, side)
        limit = a.critical_low if side == "low" else a.critical_high
        yield critical_value.issue(f"{o.path}.valueQuantity.value", side=side,
                                   side_nb="lav" if side == "low" else "høy",
                                   analysis=a.code, limit=_fmt(limit), unit=_unit(a))
