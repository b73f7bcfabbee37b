"""Per-instrument-model code maps: instrument test code -> NLK code and unit.

One CSV file per map in this folder (or a site's own folder), named
``<map name>.csv``; ``#`` lines are comments. Columns::

    instrument_code,nlk,display,loinc,unit,unit_aliases

- ``instrument_code``: the code the analyser sends (ASTM R-3 fourth
  component, POCT1-A ``OBS.observation_id`` V; POCT1-A codes may be
  qualified by their SN attribute as ``SN:code``);
- ``nlk``: the NLK (Norsk laboratoriekodeverk) code, required;
- ``display``, ``loinc``: optional;
- ``unit``: the UCUM unit the value is expected in (empty for text results);
- ``unit_aliases``: further spellings the analyser uses for the same unit,
  separated by ``|``.

:func:`load_code_map` returns the dict shape ``mappings.astm.astm_to_bundle``
and ``mappings.poct1a.poct_to_bundle`` take. ``control_targets.csv`` (same
folder) holds QC control-lot targets; :func:`load_control_targets` reads it.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent
CONTROL_TARGETS = "control_targets.csv"
_COLUMNS = ("instrument_code", "nlk", "display", "loinc", "unit", "unit_aliases")
_TARGET_COLUMNS = ("analysis", "lot", "material", "level", "low", "high", "unit")


class CodeMapError(ValueError):
    """A code map is missing or malformed; the message names file and line."""


@dataclass(frozen=True, slots=True)
class ControlTarget:
    """The accepted range of one control material / lot for one analysis."""
    analysis: str
    lot: str | None
    material: str | None
    level: str | None
    low: float
    high: float
    unit: str | None


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CodeMapError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise CodeMapError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise CodeMapError(f"{path}: no header line")
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    header = [h.strip() for h in next(reader)]
    if tuple(header) != columns:
        raise CodeMapError(f"{path}:{lines[0][0]}: header must be {','.join(columns)}")
    out = []
    for (n, _), row in zip(lines[1:], reader):
        if len(row) != len(columns):
            raise CodeMapError(f"{path}:{n}: expected {len(columns)} columns, got {len(row)}")
        out.append((n, {c: v.strip() for c, v in zip(columns, row)}))
    return out


def available(directory: str | Path | None = None) -> list[str]:
    """Names of the code maps in ``directory`` (default: the shipped ones)."""
    folder = Path(directory) if directory else DEFAULT_DIR
    return sorted(p.stem for p in folder.glob("*.csv") if p.name != CONTROL_TARGETS)


def load_code_map(name: str, directory: str | Path | None = None) -> dict[str, dict]:
    """The code map ``name`` as ``{instrument_code: {"nlk", "display", "loinc", "unit", "units"}}``."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise CodeMapError(f"{name!r} is not a code map name")
    folder = Path(directory) if directory else DEFAULT_DIR
    path = folder / f"{name}.csv"
    if not path.exists():
        raise CodeMapError(f"code map {name!r} not found in {folder} "
                           f"(available: {', '.join(available(folder)) or 'none'})")
    out: dict[str, dict] = {}
    for n, row in _rows(path, _COLUMNS):
        code = row["instrument_code"]
        if not code or not row["nlk"]:
            raise CodeMapError(f"{path}:{n}: instrument_code and nlk are required")
        if code in out:
            raise CodeMapError(f"{path}:{n}: instrument_code {code!r} is listed twice")
        entry = {"nlk": row["nlk"]}
        for key in ("display", "loinc", "unit"):
            if row[key]:
                entry[key] = row[key]
        aliases = [a.strip() for a in row["unit_aliases"].split("|") if a.strip()]
        if aliases:
            entry["units"] = aliases
        out[code] = entry
    return out


def _number(path: Path, n: int, key: str, raw: str) -> float:
    try:
        return float(raw.replace(",", "."))
    except ValueError:
        raise CodeMapError(f"{path}:{n}: {key} {raw!r} is not a number") from None


def load_control_targets(directory: str | Path | None = None) -> list[ControlTarget]:
    """The control-lot targets in ``control_targets.csv`` (empty if the file is absent)."""
    folder = Path(directory) if directory else DEFAULT_DIR
    path = folder / CONTROL_TARGETS
    if not path.exists():
        return []
    out = []
    for n, row in _rows(path, _TARGET_COLUMNS):
        if not row["analysis"] or not (row["lot"] or row["material"]):
            raise CodeMapError(f"{path}:{n}: analysis and a lot or material are required")
        low, high = _number(path, n, "low", row["low"]), _number(path, n, "high", row["high"])
        if low > high:
            raise CodeMapError(f"{path}:{n}: low {low} is above high {high}")
        out.append(ControlTarget(row["analysis"], row["lot"] or None, row["material"] or None,
                                 row["level"] or None, low, high, row["unit"] or None))
    return out
