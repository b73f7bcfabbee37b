"""A one-pass index of a canonical bundle that every rule shares.

Built once per ``validate`` call: resources by fullUrl and by type, each
Observation with its analysis row and Specimen, and parsed timestamps. Rules
read the plain dicts through it; nothing here changes the bundle.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterator

from mappings.systems import LOINC, NLK, SPECIMEN_TYPE_8351, normalise_code_system
from mappings.tables_loader import Analysis, Tables

from .fhir_ext import ANALYSIS_TIME_EXT, STORAGE_TEMPERATURE_EXT

try:
    from zoneinfo import ZoneInfo
    LOCAL_TZ = ZoneInfo("Europe/Oslo")
except Exception:  # no tz database in the image: CET without DST
    LOCAL_TZ = timezone(timedelta(hours=1))

# Spellings of volven 8351 besides the OID (DOMAIN.md §0 implication 1);
# systems.normalise_code_system covers only NLK.
_SPECIMEN_8351_ALIASES = frozenset({
    SPECIMEN_TYPE_8351,
    "http://helsedir.no/fhir/CodeSystem/no-kodeverk-8351",
    "http://ehelse.no/fhir/CodeSystem/no-kodeverk-8351",
    "http://helsedir.no/fhir/CodeSystem/8351",
    "http://ehelse.no/fhir/CodeSystem/8351",
})


def specimen_system(system) -> str | None:
    """Normalise a specimen-type code system spelling (None if not a string)."""
    if not isinstance(system, str):
        return None
    return SPECIMEN_TYPE_8351 if system in _SPECIMEN_8351_ALIASES else system


def parse_datetime(value) -> datetime | None:
    """A FHIR dateTime/instant with a time of day, as an aware datetime.

    Returns None for anything without a time (a date or partial date) or that
    does not parse. A time without offset is read as Norwegian local time.
    """
    if not isinstance(value, str) or len(value) < 16 or value[10:11] != "T":
        return None
    return _parse_datetime(value)


@lru_cache(maxsize=4096)  # the same few timestamps recur across a message's resources
def _parse_datetime(value: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=LOCAL_TZ)
    return _fixed_offset_as_utc(dt)


def _fixed_offset_as_utc(dt: datetime) -> datetime:
    """The same instant in UTC, for a time with a fixed UTC offset.

    Every parse gets its own tzinfo object, and comparing or subtracting aware
    datetimes whose tzinfo objects differ is ~20x slower than when they share
    one; the rules compare these times with each other and with the (UTC)
    ``ctx.now`` many times per message. For fixed offsets the instant, and so
    every comparison and difference, is unchanged. Local times (no offset)
    keep Europe/Oslo, whose same-zone arithmetic is wall-clock time.
    """
    if dt.tzinfo is timezone.utc or not isinstance(dt.tzinfo, timezone):
        return dt
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:   # year 1 or 9999 near the edge: keep it as given
        return dt


_UNSET = object()   # a memo slot not filled yet (None is a valid value)


def number(value) -> float | None:
    """A JSON number as float; None for bool, str, missing or non-finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


class ObsInfo:
    """One Observation with what the rules keep asking about it."""
    __slots__ = ("index", "resource", "analysis", "codes", "specimen",
                 "specimen_index", "memo", "is_hindex", "_collected", "_effective",
                 "_analysed")

    def __init__(self, index: int, resource: dict):
        self.index = index
        self.resource = resource
        self.analysis: Analysis | None = None
        self.codes: list[str] = []          # NLK/LOINC codes seen, for messages
        self.specimen: dict | None = None
        self.specimen_index: int | None = None
        self.memo: dict = {}                # per-rule caches; cleared when the value changes
        self.is_hindex = False              # carries the specimen's haemolysis index
        self._collected = _UNSET
        self._effective = _UNSET
        self._analysed = _UNSET

    @property
    def path(self) -> str:
        # Only needed for an issue's location, so built on demand.
        return f"Bundle.entry[{self.index}].resource"

    def value_quantity(self) -> dict | None:
        vq = self.resource.get("valueQuantity")
        return vq if isinstance(vq, dict) else None

    def analysis_time(self) -> datetime | None:
        if self._analysed is _UNSET:
            self._analysed = None
            for ext in _list(self.resource.get("extension")):
                if isinstance(ext, dict) and ext.get("url") == ANALYSIS_TIME_EXT:
                    self._analysed = parse_datetime(ext.get("valueDateTime"))
                    break
        return self._analysed

    def age_end(self) -> tuple[datetime | None, str]:
        """(end of the specimen's age, FHIRPath): analysis time, else the
        Specimen's receivedTime (SPM-18: a referred specimen's arrival)."""
        t = self.analysis_time()
        if t is not None:
            return t, f".extension('{ANALYSIS_TIME_EXT}')"
        if self.specimen is not None:
            t = parse_datetime(self.specimen.get("receivedTime"))
            if t is not None:
                return t, "receivedTime"
        return None, ""

    def effective_raw(self):
        r = self.resource
        v = r.get("effectiveDateTime") or r.get("effectiveInstant")
        if v is None and isinstance(r.get("effectivePeriod"), dict):
            v = r["effectivePeriod"].get("start")
        return v

    def effective(self) -> datetime | None:
        """Observation.effective[x] as a datetime (None without a time of day)."""
        if self._effective is _UNSET:
            self._effective = parse_datetime(self.effective_raw())
        return self._effective

    def specimen_has_collection_time(self) -> bool:
        """The linked Specimen gives a collection time (so it, not effective, is collection)."""
        return self.specimen is not None and specimen_collected_raw(self.specimen) is not None

    def collection_raw(self) -> tuple[object, str]:
        """(raw collection time, FHIRPath it came from): Specimen first."""
        if self.specimen_has_collection_time():
            return (specimen_collected_raw(self.specimen),
                    f"Bundle.entry[{self.specimen_index}].resource.collection")
        return self.effective_raw(), f"{self.path}.effective"

    def collected(self) -> datetime | None:
        if self._collected is _UNSET:
            if self.specimen_has_collection_time():
                self._collected = parse_datetime(specimen_collected_raw(self.specimen))
            else:
                self._collected = self.effective()
        return self._collected

    def is_grouper(self) -> bool:
        """A panel header (hasMember, no value): not a result of its own."""
        r = self.resource
        return bool(r.get("hasMember")) and not any(k.startswith("value") for k in r)


def specimen_collected_raw(specimen: dict):
    col = specimen.get("collection")
    if not isinstance(col, dict):
        return None
    v = col.get("collectedDateTime")
    if v is None and isinstance(col.get("collectedPeriod"), dict):
        v = col["collectedPeriod"].get("start")
    return v


# HL7 v2 table 0493 (specimen condition, SPM-24 → Specimen.condition) codes
# that say how the specimen was kept, as specimen_stability.csv words.
CONDITION_TEMPERATURE = {"ROOM": "room", "COOL": "cold", "FROZ": "frozen"}
CONDITION_HAEMOLYSED = "HEM"


def condition_codes(specimen: dict) -> list[str]:
    """Upper-cased codes of Specimen.condition (any system; v2-0493 expected)."""
    out = []
    for concept in _list(specimen.get("condition")):
        for c in codings(concept):
            code = c.get("code")
            if isinstance(code, str):
                out.append(code.strip().upper())
    return out


def specimen_temperature(specimen: dict) -> str | None:
    """Storage temperature word: the labgate extension, else Specimen.condition."""
    for ext in _list(specimen.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == STORAGE_TEMPERATURE_EXT:
            v = ext.get("valueCode")
            return v.lower() if isinstance(v, str) else None
    for code in condition_codes(specimen):
        if code in CONDITION_TEMPERATURE:
            return CONDITION_TEMPERATURE[code]
    return None


def as_list(value) -> list:
    """``value`` if it is a list, else an empty list (hostile input stays harmless)."""
    return value if isinstance(value, list) else []


_list = as_list


def codings(concept) -> Iterator[dict]:
    if isinstance(concept, dict):
        for c in _list(concept.get("coding")):
            if isinstance(c, dict):
                yield c


class BundleView:
    """Index of one bundle; see module doc."""
    __slots__ = ("bundle", "resources", "by_ref", "by_type", "observations", "results",
                 "hindex", "_person_ids", "patient_key", "memo")

    def __init__(self, bundle: dict, tables: Tables):
        self.bundle = bundle
        self.resources: list[tuple[int, dict]] = []
        self.by_ref: dict[str, tuple[int, dict]] = {}
        self.by_type: dict[str, list[tuple[int, dict]]] = {}
        self._person_ids = None
        self.patient_key: str | None | bool = False   # rules_history: hashed patient, once
        self.memo: dict = {}       # what several rules derive from the same resources, once
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for i, entry in enumerate(_list(entries)):
            if not isinstance(entry, dict):
                continue
            res = entry.get("resource")
            if not isinstance(res, dict):
                continue
            rtype = res.get("resourceType")
            if not isinstance(rtype, str):
                continue
            item = (i, res)
            self.resources.append(item)
            same_type = self.by_type.get(rtype)
            if same_type is None:
                self.by_type[rtype] = [item]
            else:
                same_type.append(item)
            url = entry.get("fullUrl")
            if isinstance(url, str):
                self.by_ref[url] = item
            rid = res.get("id")
            if isinstance(rid, str):
                self.by_ref[f"{rtype}/{rid}"] = item
        self.observations = [self._obs(i, r, tables) for i, r in self.by_type.get("Observation", ())]
        # Results: Observations that are not panel headers (hasMember, no value).
        # Haemolysis-index carriers are read by HAEMOLYSIS, not judged as results.
        self.results = [o for o in self.observations if not o.is_grouper() and not o.is_hindex]
        self.hindex = [o for o in self.observations if o.is_hindex]

    def of_type(self, rtype: str) -> list[tuple[int, dict]]:
        return self.by_type.get(rtype, [])

    def resolve(self, reference) -> tuple[int, dict] | None:
        """The (entry index, resource) a Reference dict points at, if in the bundle."""
        if isinstance(reference, dict):
            ref = reference.get("reference")
            if isinstance(ref, str):
                return self.by_ref.get(ref)
        return None

    def _obs(self, index: int, res: dict, tables: Tables) -> ObsInfo:
        info = ObsInfo(index, res)
        hcodes = tables.haemolysis_index_codes
        concept = res.get("code")
        for c in _list(concept.get("coding")) if isinstance(concept, dict) else ():
            if not isinstance(c, dict):
                continue
            system, code = c.get("system"), c.get("code")
            if hcodes and isinstance(code, str) and code in hcodes:
                info.is_hindex = True
            if not isinstance(code, str) or not isinstance(system, str):
                continue
            system = normalise_code_system(system)
            if system == NLK:
                info.codes.append(code)
                a = tables.analysis_by_nlk(code)
            elif system == LOINC:
                info.codes.append(code)
                a = tables.by_loinc.get(code)
            else:
                continue
            if a is not None and (info.analysis is None or a.system == "NLK"):
                info.analysis = a
        spec_ref = res.get("specimen")
        target = self.resolve(spec_ref)
        if spec_ref is None:  # unlinked: the bundle's only Specimen, if just one
            only = self.by_type.get("Specimen", [])
            target = only[0] if len(only) == 1 else None
        if target is not None and target[1].get("resourceType") == "Specimen":
            info.specimen_index, info.specimen = target
        return info


def analysis_of(concept, tables: Tables) -> tuple[Analysis | None, list[str]]:
    """The analysis a CodeableConcept names (NLK preferred, else LOINC) and the codes seen."""
    found: Analysis | None = None
    seen: list[str] = []
    for c in codings(concept):
        system, code = c.get("system"), c.get("code")
        if not isinstance(code, str) or not isinstance(system, str):
            continue
        system = normalise_code_system(system)
        if system == NLK:
            a = tables.analysis_by_nlk(code)
        elif system == LOINC:
            a = tables.by_loinc.get(code)
        else:
            continue
        seen.append(code)
        if a is not None and (found is None or a.system == "NLK"):
            found = a
    return found, seen


def view_of(bundle: dict, ctx) -> BundleView:
    """The shared index of ``bundle``, built on first use and kept on ``ctx``."""
    view = ctx._view
    if view is None or view.bundle is not bundle:
        view = BundleView(bundle, ctx.tables)
        ctx._view = view
    return view
