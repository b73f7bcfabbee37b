"""Load and check the clinical code tables under ``mappings/tables/``.

Each table is one CSV file with a header row (format: docs/rules.md, "Table
files"). Lines whose first cell starts with ``#`` are comments; blank lines
are skipped. Quoted cells may not span lines. A bad table fails the load with
a :class:`TableError` naming the file, the line and the reason, so a wrong
edit stops the gateway at start-up instead of misjudging results later.

Lookups the rules need on the hot path are precomputed here as dicts.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from mappings.systems import SPECIMEN_TYPE_8351, V2_0487

TABLES_DIR = Path(__file__).resolve().parent / "tables"

ANALYSES = "analyses.csv"
CONVERSIONS = "unit_conversions.csv"
UNIT_ALIASES = "unit_aliases.csv"
CONTAINER_ALIASES = "container_aliases.csv"
STABILITY = "specimen_stability.csv"
QC_INTERVALS = "qc_intervals.csv"
DELTA_CHECKS = "delta_checks.csv"
HAEMOLYSIS_LIMITS = "haemolysis_limits.csv"
HAEMOLYSIS_INDEX_CODES = "haemolysis_index_codes.csv"

ANALYSIS_SYSTEMS = ("NLK", "LOINC")
SPECIMEN_SYSTEM_PREFIXES = {"8351": SPECIMEN_TYPE_8351, "0487": V2_0487}
TEMPERATURES = frozenset({"room", "cold", "ice", "frozen"})
ANY = "*"


class TableError(ValueError):
    """A table file is missing or wrong; says where and why."""

    def __init__(self, file: str, line: int, reason: str):
        self.file, self.line, self.reason = file, line, reason
        super().__init__(f"{file}:{line}: {reason}")


@dataclass(frozen=True, slots=True)
class Analysis:
    """One row of analyses.csv; limits are in ``canonical_unit``."""
    code: str
    system: str                      # "NLK" or "LOINC"
    display: str
    units: frozenset[str]            # UCUM codes accepted as they are
    canonical_unit: str
    loinc: tuple[str, ...]
    specimen_types: frozenset[tuple[str, str]]   # (system URI, code)
    plausible_low: float | None = None
    plausible_high: float | None = None
    critical_low: float | None = None
    critical_high: float | None = None
    critical_inclusive: bool = False


@dataclass(frozen=True, slots=True)
class StabilityLimit:
    max_minutes: int
    container: str
    temperature: str


@dataclass(frozen=True, slots=True)
class DeltaLimit:
    """One row of delta_checks.csv: flag a change above every limit given."""
    max_abs: float | None       # canonical unit
    max_rel: float | None       # percent of the previous value
    window_minutes: int


@dataclass(frozen=True, slots=True)
class HaemolysisLimit:
    """One row of haemolysis_limits.csv."""
    max_index: float | None     # highest acceptable H-index; None = index not judged
    flag_fails: bool            # a qualitative "haemolysed" flag fails the result


@dataclass(slots=True)
class Tables:
    """All tables, indexed for the lookups the validation rules make."""
    analyses: dict[str, Analysis] = field(default_factory=dict)
    by_loinc: dict[str, Analysis] = field(default_factory=dict)
    conversions: dict[tuple[str, str], float] = field(default_factory=dict)
    unit_aliases: dict[str, str] = field(default_factory=dict)
    container_aliases: dict[str, str] = field(default_factory=dict)
    stability: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    qc_interval_minutes: dict[str, int] = field(default_factory=dict)
    delta: dict[str, DeltaLimit] = field(default_factory=dict)
    haemolysis: dict[str, HaemolysisLimit] = field(default_factory=dict)
    haemolysis_index_codes: frozenset[str] = frozenset()

    @property
    def max_delta_window_minutes(self) -> int:
        return max((d.window_minutes for d in self.delta.values()), default=0)

    def analysis_by_nlk(self, code: str) -> Analysis | None:
        a = self.analyses.get(code)
        return a if a is not None and a.system == "NLK" else None

    def ucum(self, unit: str) -> str:
        """The UCUM code for a unit as sent (unchanged when no alias fits)."""
        got = self.unit_aliases.get(unit)
        if got is None:
            got = self.unit_aliases.get(unit.lower(), unit)
        return got

    def container(self, token: str) -> str | None:
        return self.container_aliases.get(token.lower())

    def stability_limit(self, analysis: str, containers: Iterable[str],
                        temperature: str | None) -> StabilityLimit | None:
        """The most specific stability row for the hints given, or None."""
        rows = self.stability.get(analysis)
        if not rows:
            return None
        temps = (temperature, ANY) if temperature else (ANY,)
        for c in (*containers, ANY):
            for t in temps:
                minutes = rows.get((c, t))
                if minutes is not None:
                    return StabilityLimit(minutes, c, t)
        return None


# --- reading -----------------------------------------------------------------

def _rows(path: Path, columns: dict[str, bool]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row dict) for a CSV table; check its header.

    ``columns`` maps every allowed column to whether it is required.
    """
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TableError(name, 0, "file not found") from None
    except UnicodeDecodeError as e:
        raise TableError(name, 0, f"not UTF-8 ({e.reason})") from None
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in cells]
        if header is None:
            header = _check_header(name, line, cells, columns)
            continue
        if len(cells) != len(header):
            raise TableError(name, line, f"{len(cells)} cells, header has {len(header)}")
        yield line, dict(zip(header, cells))
    if header is None:
        raise TableError(name, 1, "empty file: no header row")


def _check_header(name: str, line: int, cells: list[str],
                  columns: dict[str, bool]) -> list[str]:
    seen: set[str] = set()
    for c in cells:
        if c not in columns:
            raise TableError(name, line, f"unknown column {c!r}; allowed: {', '.join(columns)}")
        if c in seen:
            raise TableError(name, line, f"column {c!r} appears twice")
        seen.add(c)
    missing = [c for c, required in columns.items() if required and c not in seen]
    if missing:
        raise TableError(name, line, f"missing column(s): {', '.join(missing)}")
    return cells


def _number(name: str, line: int, row: dict[str, str], col: str) -> float | None:
    raw = row.get(col, "")
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise TableError(name, line, f"column {col}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise TableError(name, line, f"column {col}: {raw!r} is not a finite number")
    return value


def _minutes(name: str, line: int, row: dict[str, str], col: str) -> int:
    raw = row.get(col, "")
    if not raw.isdigit():
        raise TableError(name, line, f"column {col}: {raw!r} is not a whole number of minutes")
    return int(raw)


def _required(name: str, line: int, row: dict[str, str], col: str) -> str:
    value = row.get(col, "")
    if not value:
        raise TableError(name, line, f"column {col} is empty")
    return value


def _bool(name: str, line: int, raw: str, col: str) -> bool:
    low = raw.lower()
    if low in ("", "no", "false", "0"):
        return False
    if low in ("yes", "true", "1"):
        return True
    raise TableError(name, line, f"column {col}: {raw!r} is not yes/no")


def _split(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split("|") if p.strip())


def _unique(name: str, line: int, seen: dict, key, label: str) -> None:
    if key in seen:
        raise TableError(name, line, f"duplicate {label} {key!r} (first on line {seen[key]})")
    seen[key] = line


# --- tables --------------------------------------------------------------------

_ANALYSIS_COLUMNS = {
    "code": True, "system": True, "display": False, "units": True,
    "canonical_unit": True, "loinc": False, "specimen_types": False,
    "plausible_low": False, "plausible_high": False, "critical_low": False,
    "critical_high": False, "critical_inclusive": False, "source": False,
}


def _specimen_types(name: str, line: int, raw: str) -> frozenset[tuple[str, str]]:
    out = set()
    for token in _split(raw):
        prefix, _, code = token.partition(":")
        system = SPECIMEN_SYSTEM_PREFIXES.get(prefix)
        if system is None or not code:
            raise TableError(name, line, f"specimen type {token!r} is not 8351:CODE or 0487:CODE")
        out.add((system, code))
    return frozenset(out)


def _low_high(name: str, line: int, low: float | None, high: float | None, what: str) -> None:
    if low is not None and high is not None and low > high:
        raise TableError(name, line, f"{what} low {low} is above high {high}")


def _analysis(name: str, line: int, row: dict[str, str]) -> Analysis:
    code = _required(name, line, row, "code")
    system = row["system"].upper()
    if system not in ANALYSIS_SYSTEMS:
        raise TableError(name, line, f"column system: {row['system']!r} is not NLK or LOINC")
    units = frozenset(_split(row["units"]))
    canonical = row["canonical_unit"]
    if canonical and canonical not in units:
        raise TableError(name, line, f"canonical_unit {canonical!r} is not among units")
    if units and not canonical:
        raise TableError(name, line, "units given but canonical_unit is empty")
    num = {c: _number(name, line, row, c) for c in
           ("plausible_low", "plausible_high", "critical_low", "critical_high")}
    if (num["plausible_low"] is not None or num["plausible_high"] is not None
            or num["critical_low"] is not None or num["critical_high"] is not None) and not units:
        raise TableError(name, line, "limits need a canonical unit")
    _low_high(name, line, num["plausible_low"], num["plausible_high"], "plausible")
    _low_high(name, line, num["critical_low"], num["critical_high"], "critical")
    return Analysis(
        code=code, system=system, display=row.get("display", ""), units=units,
        canonical_unit=canonical, loinc=_split(row.get("loinc", "")),
        specimen_types=_specimen_types(name, line, row.get("specimen_types", "")),
        critical_inclusive=_bool(name, line, row.get("critical_inclusive", ""),
                                 "critical_inclusive"),
        **num)


def _load_analyses(directory: Path, tables: Tables) -> None:
    seen: dict[str, int] = {}
    loinc_seen: dict[str, list[Analysis]] = {}
    for line, row in _rows(directory / ANALYSES, _ANALYSIS_COLUMNS):
        a = _analysis(ANALYSES, line, row)
        _unique(ANALYSES, line, seen, a.code, "code")
        tables.analyses[a.code] = a
        if a.system == "LOINC":
            loinc_seen.setdefault(a.code, []).insert(0, a)
        for lc in a.loinc:
            loinc_seen.setdefault(lc, []).append(a)
    # A LOINC code identifies an analysis only when it points at exactly one row
    # (or at a LOINC-keyed row, which always wins).
    for lc, rows in loinc_seen.items():
        if rows[0].system == "LOINC" or len(rows) == 1:
            tables.by_loinc[lc] = rows[0]


def _known(name: str, line: int, tables: Tables, code: str) -> Analysis:
    a = tables.analyses.get(code)
    if a is None:
        raise TableError(name, line, f"analysis {code!r} is not in {ANALYSES}")
    return a


def _load_conversions(directory: Path, tables: Tables) -> None:
    columns = {"analysis": True, "from_unit": True, "to_unit": True,
               "factor": True, "source": False}
    seen: dict = {}
    for line, row in _rows(directory / CONVERSIONS, columns):
        a = _known(CONVERSIONS, line, tables, _required(CONVERSIONS, line, row, "analysis"))
        src, dst = _required(CONVERSIONS, line, row, "from_unit"), row["to_unit"]
        if dst != a.canonical_unit:
            raise TableError(CONVERSIONS, line,
                             f"to_unit {dst!r} is not the canonical unit {a.canonical_unit!r} of {a.code}")
        if src in a.units:
            raise TableError(CONVERSIONS, line, f"from_unit {src!r} is already accepted for {a.code}")
        factor = _number(CONVERSIONS, line, row, "factor")
        if factor is None or factor <= 0:
            raise TableError(CONVERSIONS, line, "factor must be a number above 0")
        _unique(CONVERSIONS, line, seen, (a.code, src), "conversion")
        tables.conversions[(a.code, src)] = factor


def _load_aliases(directory: Path, file: str, key: str, value: str,
                  target: dict[str, str], lower: bool) -> None:
    """alias -> value; ``lower`` folds case of both (else exact + lower-case keys)."""
    seen: dict = {}
    for line, row in _rows(directory / file, {key: True, value: True, "source": False}):
        alias = _required(file, line, row, key)
        to = _required(file, line, row, value)
        if lower:
            alias, to = alias.lower(), to.lower()
        _unique(file, line, seen, alias, "alias")
        target[alias] = to
        if not lower:
            target.setdefault(alias.lower(), to)


def _load_stability(directory: Path, tables: Tables) -> None:
    columns = {"analysis": True, "container": True, "temperature": True,
               "max_minutes": True, "source": False}
    containers = set(tables.container_aliases.values())
    seen: dict = {}
    for line, row in _rows(directory / STABILITY, columns):
        a = _known(STABILITY, line, tables, _required(STABILITY, line, row, "analysis"))
        container = _required(STABILITY, line, row, "container").lower()
        temp = _required(STABILITY, line, row, "temperature").lower()
        if container != ANY and container not in containers:
            raise TableError(STABILITY, line,
                             f"container {container!r} is not a container in {CONTAINER_ALIASES}")
        if temp != ANY and temp not in TEMPERATURES:
            raise TableError(STABILITY, line,
                             f"temperature {temp!r} is not one of {', '.join(sorted(TEMPERATURES))} or *")
        key = (a.code, container, temp)
        _unique(STABILITY, line, seen, key, "row")
        tables.stability.setdefault(a.code, {})[(container, temp)] = \
            _minutes(STABILITY, line, row, "max_minutes")


def _load_qc(directory: Path, tables: Tables) -> None:
    columns = {"analysis": True, "max_minutes": True, "source": False}
    seen: dict = {}
    for line, row in _rows(directory / QC_INTERVALS, columns):
        a = _known(QC_INTERVALS, line, tables, _required(QC_INTERVALS, line, row, "analysis"))
        _unique(QC_INTERVALS, line, seen, a.code, "analysis")
        minutes = _minutes(QC_INTERVALS, line, row, "max_minutes")
        if minutes == 0:
            raise TableError(QC_INTERVALS, line, "max_minutes must be above 0")
        tables.qc_interval_minutes[a.code] = minutes


def _load_delta(directory: Path, tables: Tables) -> None:
    columns = {"analysis": True, "max_abs_change": False, "max_rel_change": False,
               "window_minutes": True, "source": False}
    seen: dict = {}
    for line, row in _rows(directory / DELTA_CHECKS, columns):
        a = _known(DELTA_CHECKS, line, tables, _required(DELTA_CHECKS, line, row, "analysis"))
        _unique(DELTA_CHECKS, line, seen, a.code, "analysis")
        if not a.units:
            raise TableError(DELTA_CHECKS, line, f"analysis {a.code} has no unit: no delta possible")
        max_abs = _number(DELTA_CHECKS, line, row, "max_abs_change")
        max_rel = _number(DELTA_CHECKS, line, row, "max_rel_change")
        if max_abs is None and max_rel is None:
            raise TableError(DELTA_CHECKS, line, "give max_abs_change, max_rel_change or both")
        for col, v in (("max_abs_change", max_abs), ("max_rel_change", max_rel)):
            if v is not None and v <= 0:
                raise TableError(DELTA_CHECKS, line, f"column {col} must be above 0")
        minutes = _minutes(DELTA_CHECKS, line, row, "window_minutes")
        if minutes == 0:
            raise TableError(DELTA_CHECKS, line, "window_minutes must be above 0")
        tables.delta[a.code] = DeltaLimit(max_abs, max_rel, minutes)


def _load_haemolysis(directory: Path, tables: Tables) -> None:
    columns = {"analysis": True, "max_index": False, "flag_fails": False, "source": False}
    seen: dict = {}
    for line, row in _rows(directory / HAEMOLYSIS_LIMITS, columns):
        name = HAEMOLYSIS_LIMITS
        a = _known(name, line, tables, _required(name, line, row, "analysis"))
        _unique(name, line, seen, a.code, "analysis")
        max_index = _number(name, line, row, "max_index")
        if max_index is not None and max_index < 0:
            raise TableError(name, line, "column max_index must not be negative")
        flag = _bool(name, line, row.get("flag_fails", ""), "flag_fails")
        if max_index is None and not flag:
            raise TableError(name, line, "row checks nothing: give max_index or flag_fails yes")
        tables.haemolysis[a.code] = HaemolysisLimit(max_index, flag)
    codes: dict = {}
    for line, row in _rows(directory / HAEMOLYSIS_INDEX_CODES, {"code": True, "source": False}):
        code = _required(HAEMOLYSIS_INDEX_CODES, line, row, "code")
        _unique(HAEMOLYSIS_INDEX_CODES, line, codes, code, "code")
        if code in tables.analyses:
            raise TableError(HAEMOLYSIS_INDEX_CODES, line,
                             f"{code!r} is an analysis in {ANALYSES}, not an index code")
    tables.haemolysis_index_codes = frozenset(codes)


def load_tables(directory: str | Path | None = None) -> Tables:
    """Read and check every table in ``directory`` (default: the shipped ones)."""
    d = Path(directory) if directory is not None else TABLES_DIR
    tables = Tables()
    _load_analyses(d, tables)
    _load_aliases(d, UNIT_ALIASES, "alias", "ucum", tables.unit_aliases, lower=False)
    _load_aliases(d, CONTAINER_ALIASES, "alias", "container",
                  tables.container_aliases, lower=True)
    for a in tables.analyses.values():   # accepted units resolve in one lookup
        for u in a.units:
            tables.unit_aliases.setdefault(u, u)
    _load_conversions(d, tables)
    _load_stability(d, tables)
    _load_qc(d, tables)
    _load_delta(d, tables)
    _load_haemolysis(d, tables)
    return tables


@lru_cache(maxsize=1)
def default_tables() -> Tables:
    """The shipped tables, loaded once per process."""
    return load_tables()
