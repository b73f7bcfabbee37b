"""Table loading: the shipped tables load; bad tables name file, line and reason."""
import shutil
from pathlib import Path

import pytest

from mappings import tables_loader as tl
from mappings.systems import SPECIMEN_TYPE_8351, V2_0487


@pytest.fixture
def tables_dir(tmp_path) -> Path:
    """A writable copy of the shipped tables."""
    d = tmp_path / "tables"
    shutil.copytree(tl.TABLES_DIR, d)
    return d


def _append(path: Path, line: str) -> int:
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n", encoding="utf-8")
    return text.count("\n") + 1


def _error(d: Path) -> tl.TableError:
    with pytest.raises(tl.TableError) as e:
        tl.load_tables(d)
    return e.value


def test_shipped_tables_load_with_seed_content():
    t = tl.load_tables()
    for code in ("NPU19748", "NPU27300", "NPU01685", "NOR05172", "NPU28309", "NPU02192",
                 "NPU22089", "NPU02187", "NPU03230", "NOR25614", "NPU03429", "NPU04998",
                 "NPU02593", "NPU03568", "NPU27501", "NPU19767", "NPU59390", "NPU03987"):
        assert t.analysis_by_nlk(code) is not None, code
    assert t.by_loinc["32693-4"].system == "LOINC"          # lactate, no NLK code known
    assert "2823-3" not in t.by_loinc                         # K: two NLK rows share it
    k = t.analyses["NPU03230"]
    assert (k.critical_low, k.critical_high) == (2.5, 6.2)   # Haraldsplass
    assert (k.plausible_low, k.plausible_high) == (1.0, 10.0)  # [OWN] §4.5
    assert (SPECIMEN_TYPE_8351, "P") in k.specimen_types and (V2_0487, "SER") in k.specimen_types
    assert t.conversions[("NOR05172", "g/L")] == 0.1
    assert t.conversions[("NPU28309", "g/dL")] == 10
    assert t.ucum("10E9/L") == "10*9/L" and t.ucum("MMOL/L") == "mmol/L"
    assert t.container("hepl") == "li-hep"


def test_stability_lookup_prefers_the_most_specific_row():
    t = tl.load_tables()
    assert t.stability_limit("NPU03230", [], None).max_minutes == 120
    assert t.stability_limit("NPU03230", ["li-hep"], "room").max_minutes == 240
    assert t.stability_limit("NPU03230", ["li-hep"], "cold").max_minutes == 120
    assert t.stability_limit("NPU01685", [], "cold").max_minutes == 0
    assert t.stability_limit("32693-4", ["naf"], "ice").max_minutes == 120
    assert t.stability_limit("32693-4", [], "ice").max_minutes == 90
    assert t.stability_limit("NPU19748", [], None) is None    # CRP: no figure (gap)


@pytest.mark.parametrize("file,line,reason", [
    ("analyses.csv", "NPU99999,NLK,X,mg/L,mg/L,,,abc,,,,no,", "is not a number"),
    ("analyses.csv", "NPU99999,NLK,X,mg/L,mg/L,,,nan,,,,no,", "not a finite number"),
    ("analyses.csv", "NPU19748,NLK,dup,mg/L,mg/L,,,,,,,no,", "duplicate code 'NPU19748'"),
    ("analyses.csv", "NPU99999,SNOMED,X,mg/L,mg/L,,,,,,,no,", "not NLK or LOINC"),
    ("analyses.csv", "NPU99999,NLK,X,mg/L,g/L,,,,,,,no,", "canonical_unit 'g/L' is not among units"),
    ("analyses.csv", "NPU99999,NLK,X,mg/L,mg/L,,,5,1,,,no,", "plausible low 5.0 is above high 1.0"),
    ("analyses.csv", "NPU99999,NLK,X,mg/L,mg/L,,B,,,,,no,", "is not 8351:CODE or 0487:CODE"),
    ("analyses.csv", "NPU99999,NLK,X,mg/L,mg/L,,,,,,,maybe,", "is not yes/no"),
    ("analyses.csv", "NPU99999,NLK,X,mg/L", "4 cells, header has 13"),
    ("unit_conversions.csv", "NPU00000,g/L,g/dL,0.1,x", "analysis 'NPU00000' is not in analyses.csv"),
    ("unit_conversions.csv", "NOR05172,g/L,g/dL,0.1,x", "duplicate conversion"),
    ("unit_conversions.csv", "NOR05172,kg/L,g/L,0.1,x", "not the canonical unit"),
    ("unit_conversions.csv", "NOR05172,kg/L,g/dL,-1,x", "factor must be a number above 0"),
    ("specimen_stability.csv", "NPU03230,*,*,60,x", "duplicate row"),
    ("specimen_stability.csv", "NPU03230,bucket,*,60,x", "container 'bucket'"),
    ("specimen_stability.csv", "NPU03230,*,warm,60,x", "temperature 'warm'"),
    ("specimen_stability.csv", "NPU03230,edta,*,1.5,x", "not a whole number of minutes"),
    ("qc_intervals.csv", "NPU19748,60,x", "duplicate analysis 'NPU19748'"),
    ("unit_aliases.csv", "mmol/l,mmol/L", "duplicate alias"),
    ("delta_checks.csv", "NPU03230,1,25,60,x", "duplicate analysis 'NPU03230'"),
    ("delta_checks.csv", "NPU00000,1,25,60,x", "analysis 'NPU00000' is not in analyses.csv"),
    ("delta_checks.csv", "NPU19748,,,60,x", "give max_abs_change, max_rel_change or both"),
    ("delta_checks.csv", "NPU19748,-1,,60,x", "column max_abs_change must be above 0"),
    ("delta_checks.csv", "NPU19748,5,,0,x", "window_minutes must be above 0"),
    ("delta_checks.csv", "NPU19748,5,,1 day,x", "not a whole number of minutes"),
    ("delta_checks.csv", "NPU59390,5,,60,x", "has no unit"),
    ("haemolysis_limits.csv", "NPU03230,50,yes,x", "duplicate analysis 'NPU03230'"),
    ("haemolysis_limits.csv", "NPU19748,,no,x", "row checks nothing"),
    ("haemolysis_limits.csv", "NPU19748,high,yes,x", "is not a number"),
    ("haemolysis_limits.csv", "NPU19748,-5,yes,x", "must not be negative"),
    ("haemolysis_limits.csv", "NPU19748,50,often,x", "is not yes/no"),
    ("haemolysis_index_codes.csv", "H-INDEX,x", "duplicate code 'H-INDEX'"),
    ("haemolysis_index_codes.csv", "NPU19748,x", "is an analysis in analyses.csv"),
])
def test_bad_row_names_file_line_and_reason(tables_dir, file, line, reason):
    n = _append(tables_dir / file, line)
    err = _error(tables_dir)
    assert (err.file, err.line) == (file, n)
    assert reason in err.reason
    assert str(err).startswith(f"{file}:{n}: ")


def test_unknown_column(tables_dir):
    path = tables_dir / "qc_intervals.csv"
    lines = path.read_text().splitlines()
    header_at = next(i for i, l in enumerate(lines) if not l.startswith("#"))
    lines[header_at] += ",colour"
    path.write_text("\n".join(line + (",x" if i > header_at else "")
                              for i, line in enumerate(lines)) + "\n")
    err = _error(tables_dir)
    assert (err.file, err.line) == ("qc_intervals.csv", header_at + 1)
    assert "unknown column 'colour'" in err.reason


def test_missing_required_column(tables_dir):
    (tables_dir / "qc_intervals.csv").write_text("analysis,source\nNPU19748,x\n")
    err = _error(tables_dir)
    assert (err.file, err.line) == ("qc_intervals.csv", 1)
    assert "missing column(s): max_minutes" in err.reason


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tables_dir, content):
    (tables_dir / "specimen_stability.csv").write_text(content)
    err = _error(tables_dir)
    assert err.file == "specimen_stability.csv" and "empty file" in err.reason


def test_missing_file_and_bad_encoding(tables_dir):
    (tables_dir / "unit_aliases.csv").unlink()
    assert _error(tables_dir).reason == "file not found"
    (tables_dir / "unit_aliases.csv").write_bytes(b"alias,ucum\n\xff\xfe,mg/L\n")
    err = _error(tables_dir)
    assert err.file == "unit_aliases.csv" and "not UTF-8" in err.reason


def test_header_only_table_is_empty_not_an_error(tables_dir):
    (tables_dir / "qc_intervals.csv").write_text("analysis,max_minutes,source\n")
    assert tl.load_tables(tables_dir).qc_interval_minutes == {}


def test_new_tables_seed_content():
    t = tl.load_tables()
    k = t.delta["NPU03230"]
    assert (k.max_abs, k.max_rel, k.window_minutes) == (1.0, 25.0, 4320)
    assert t.delta["NPU03429"].max_rel is None
    assert t.haemolysis["NPU03230"].max_index == 90 and t.haemolysis["NPU03230"].flag_fails
    assert t.haemolysis["32693-4"].max_index is None
    assert "H-INDEX" in t.haemolysis_index_codes
    assert t.max_delta_window_minutes == 4320
