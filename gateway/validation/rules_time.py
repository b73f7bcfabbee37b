"""Collection time, time order and specimen age rules (DOMAIN.md §4.1, §4.2).

Collection time is Specimen.collection.collected[x] when the result has a
Specimen with one, else Observation.effective[x] (NILAR puts the sampling time
in both). Analysis time is the observation-analysis-date-time extension.
"""
from __future__ import annotations

from .bundle_view import (as_list, ObsInfo, codings, parse_datetime, specimen_collected_raw,
                          specimen_temperature, view_of)
from .fhir_ext import ANALYSIS_TIME_EXT
from .registry import rule

_ANALYSIS_TIME_PATH = f".extension('{ANALYSIS_TIME_EXT}')"


def _results(bundle, ctx) -> list[ObsInfo]:
    return view_of(bundle, ctx).results


@rule("COLLECTION-TIME-MISSING", "error",
      en="The sampling time (date and time of day) is missing.",
      nb="Prøvetakingstidspunkt (dato og klokkeslett) mangler.")
def collection_time_missing(bundle, ctx):
    """Every result has a collection date with time of day, on its Specimen or
    in Observation.effective."""
    for o in _results(bundle, ctx):
        if o.collected() is None:
            yield collection_time_missing.issue(o.collection_raw()[1])


@rule("COLLECTION-TIME-FUTURE", "error",
      en="The sampling time is in the future.",
      nb="Prøvetakingstidspunktet er fram i tid.")
def collection_time_future(bundle, ctx):
    """No collection time (Specimen or Observation.effective) is later than now
    plus the clock-skew tolerance."""
    view = view_of(bundle, ctx)
    latest = ctx.now + ctx.clock_skew
    for i, sp in view.of_type("Specimen"):
        t = parse_datetime(specimen_collected_raw(sp))
        if t is not None and t > latest:
            yield collection_time_future.issue(f"Bundle.entry[{i}].resource.collection")
    for o in view.results:
        t = o.effective()
        if t is not None and t > latest:
            yield collection_time_future.issue(f"{o.path}.effective")


@rule("ANALYSIS-BEFORE-COLLECTION", "error",
      en="The {what} is before the sampling time.",
      nb="{what_nb} er før prøvetakingstidspunktet.")
def analysis_before_collection(bundle, ctx):
    """Observation.effective (when the Specimen holds the collection time), the
    analysis time and Observation.issued are not before collection, within
    the clock-skew tolerance."""
    for o in _results(bundle, ctx):
        collected = o.collected()
        if collected is None:
            continue
        earliest = collected - ctx.clock_skew
        t = o.analysis_time()
        if t is not None and t < earliest:
            yield analysis_before_collection.issue(o.path + _ANALYSIS_TIME_PATH, **_ANALYSIS)
        t = parse_datetime(o.resource.get("issued"))
        if t is not None and t < earliest:
            yield analysis_before_collection.issue(o.path + ".issued", **_ISSUED)
        if o.specimen_has_collection_time():
            t = o.effective()
            if t is not None and t < earliest:
                yield analysis_before_collection.issue(o.path + ".effective", **_EFFECTIVE)


_ANALYSIS = {"what": "analysis time", "what_nb": "Analysetidspunktet"}
_ISSUED = {"what": "issued time", "what_nb": "Utstedt-tidspunktet"}
_EFFECTIVE = {"what": "observation time (effective)",
              "what_nb": "Observasjonstidspunktet (effective)"}


def container_hints(ctx, specimen: dict | None) -> list[str]:
    """Container words (specimen_stability.csv) from container type/additive codes."""
    if specimen is None:
        return []
    found = []
    for cont in as_list(specimen.get("container")):
        if not isinstance(cont, dict):
            continue
        concepts = (cont.get("type"), cont.get("additiveCodeableConcept"))
        for concept in concepts:
            tokens = [c.get("code") for c in codings(concept)]
            if isinstance(concept, dict):
                tokens.append(concept.get("text"))
            for token in tokens:
                word = ctx.tables.container(token) if isinstance(token, str) else None
                if word and word not in found:
                    found.append(word)
    return found


@rule("SPECIMEN-TOO-OLD", "error",
      en="The specimen was {age} min old at analysis or receipt; {analysis} allows {limit} min "
         "(container {container}, temperature {temperature}).",
      nb="Prøven var {age} min gammel ved analyse eller mottak; {analysis} tåler {limit} min "
         "(beholder {container}, temperatur {temperature}).")
def specimen_too_old(bundle, ctx):
    """Analysis time (else the Specimen's receivedTime, for referred specimens)
    minus collection time is within the stability limit for the analysis,
    container and storage temperature (specimen_stability.csv; the most
    specific row wins; no row means no limit)."""
    tables = ctx.tables
    for o in _results(bundle, ctx):
        a = o.analysis
        if a is None or a.code not in tables.stability:
            continue
        collected, (analysed, end_path) = o.collected(), o.age_end()
        if collected is None or analysed is None:
            continue
        temp = specimen_temperature(o.specimen) if o.specimen is not None else None
        limit = tables.stability_limit(a.code, container_hints(ctx, o.specimen), temp)
        if limit is None:
            continue
        age = (analysed - collected).total_seconds() / 60
        if age > limit.max_minutes:
            loc = (o.path + _ANALYSIS_TIME_PATH if end_path != "receivedTime"
                   else f"Bundle.entry[{o.specimen_index}].resource.receivedTime")
            yield specimen_too_old.issue(loc, age=int(age), analysis=a.code,
                                         limit=limit.max_minutes, container=limit.container,
                                         temperature=limit.temperature)
