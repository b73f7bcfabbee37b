"""Haemolysis and reagent-lot rules (DOMAIN.md §4.3, §4.6 and the device row of §4.8)."""
from __future__ import annotations

from datetime import date, datetime

from .bundle_view import (CONDITION_HAEMOLYSED, LOCAL_TZ, ObsInfo, as_list, condition_codes,
                          number, parse_datetime, view_of)
from .fhir_ext import HAEMOLYSIS_INDEX_EXT
from .registry import rule


def _index_from_specimen(specimen: dict | None) -> float | None:
    if specimen is None:
        return None
    for ext in as_list(specimen.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == HAEMOLYSIS_INDEX_EXT:
            v = ext.get("valueDecimal", ext.get("valueInteger"))
            return number(v)
    return None


def _index_from_results(view, o: ObsInfo) -> float | None:
    """The H-index sent as its own result for the same specimen (or the bundle's only one)."""
    carriers = view.hindex
    if not carriers:
        return None
    same = [h for h in carriers if h.specimen is not None and h.specimen is o.specimen]
    pick = same or (carriers if len(carriers) == 1 else [])
    for h in pick:
        vq = h.value_quantity()
        v = number(vq.get("value")) if vq is not None else None
        if v is not None:
            return v
    return None


@rule("HAEMOLYSIS", "error",
      en="The specimen is haemolysed ({why}); {analysis} cannot be reported from it.",
      nb="Prøven er hemolysert ({why_nb}); {analysis} kan ikke besvares fra den.")
def haemolysis(bundle, ctx):
    """A result of an analysis in haemolysis_limits.csv is rejected when its
    specimen's haemolysis index is above max_index, or when the specimen is
    flagged haemolysed (Specimen.condition v2-0493 HEM) and flag_fails is yes.
    The index comes from the Specimen extension or from a result coded with a
    code in haemolysis_index_codes.csv (same specimen)."""
    limits = ctx.tables.haemolysis
    if not limits:
        return
    view = view_of(bundle, ctx)
    for o in view.results:
        a = o.analysis
        lim = limits.get(a.code) if a is not None else None
        if lim is None:
            continue
        index = _index_from_specimen(o.specimen)
        if index is None:
            index = _index_from_results(view, o)
        if lim.max_index is not None and index is not None and index > lim.max_index:
            yield haemolysis.issue(f"{o.path}.valueQuantity", analysis=a.code,
                                   why=f"H-index above {lim.max_index:g}",
                                   why_nb=f"H-indeks over {lim.max_index:g}")
        elif (lim.flag_fails and o.specimen is not None
              and CONDITION_HAEMOLYSED in condition_codes(o.specimen)):
            yield haemolysis.issue(f"Bundle.entry[{o.specimen_index}].resource.condition",
                                   analysis=a.code, why="flagged by the sender",
                                   why_nb="flagget av avsender")


def _expiry(device: dict) -> tuple[datetime | date | None, bool]:
    """(expiry, has_time) from Device.expirationDate (date or dateTime)."""
    raw = device.get("expirationDate")
    if not isinstance(raw, str):
        return None, False
    t = parse_datetime(raw)
    if t is not None:
        return t, True
    try:
        return date.fromisoformat(raw[:10]), False
    except ValueError:
        return None, False


@rule("REAGENT-LOT-EXPIRED", "error",
      en="The reagent lot {lot} used for {analysis} had expired on the test date.",
      nb="Reagenslot {lot} brukt til {analysis} var utløpt på analysedatoen.")
def reagent_lot_expired(bundle, ctx):
    """A result whose Device (Observation.device, in the bundle) carries an
    expirationDate was analysed (analysis time, else collection time, else
    now) on or before that date; an expiry date is usable through its day."""
    view = view_of(bundle, ctx)
    for o in view.results:
        target = view.resolve(o.resource.get("device"))
        if target is None or target[1].get("resourceType") != "Device":
            continue
        expiry, has_time = _expiry(target[1])
        if expiry is None:
            continue
        at = o.analysis_time() or o.collected() or ctx.now
        expired = at > expiry if has_time else at.astimezone(LOCAL_TZ).date() > expiry
        if expired:
            lot = target[1].get("lotNumber")
            yield reagent_lot_expired.issue(
                f"Bundle.entry[{target[0]}].resource.expirationDate",
                lot=lot if isinstance(lot, str) else "(no lot number)",
                analysis=o.analysis.code if o.analysis is not None else ", ".join(o.codes))
