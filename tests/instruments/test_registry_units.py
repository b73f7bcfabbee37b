"""Code maps, control targets, QC state and operator certification, and the
configuration of instruments: without sockets."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from gateway.config import ConfigError, parse
from gateway.instruments.qc import Judged, QcRun, Targets, normalise
from gateway.instruments.registry import OperatorInfo, Registry
from mappings.codemaps import (CodeMapError, ControlTarget, available, load_code_map,
                               load_control_targets)

from inst_support import instrument_config

T0 = datetime(2025, 3, 14, 8, 0, tzinfo=timezone.utc)


def test_shipped_code_maps_load_and_name_nlk_codes():
    assert {"crp-poc", "hba1c-poc", "inr-poc", "labgate-sim"} <= set(available())
    assert load_code_map("crp-poc")["CRP"] == {"nlk": "NPU19748", "display": "P-C-Reaktivt protein",
                                               "loinc": "1988-5", "unit": "mg/L",
                                               "units": ["mg/l", "MG/L"]}
    assert load_code_map("labgate-sim")["LABGATE-SIM:HbA1c"]["nlk"] == "NPU27300"
    targets = load_control_targets()
    assert any(t.lot == "CII-55821" and (t.low, t.high) == (22, 34) for t in targets)


@pytest.mark.parametrize("text,needle", [
    ("", "no header"),
    ("code,nlk\nCRP,NPU19748\n", "header must be"),
    ("instrument_code,nlk,display,loinc,unit,unit_aliases\nCRP,,x,,mg/L,\n", "required"),
    ("instrument_code,nlk,display,loinc,unit,unit_aliases\nCRP,N1,,,,\nCRP,N2,,,,\n", "twice"),
    ("instrument_code,nlk,display,loinc,unit,unit_aliases\nCRP,N1,,\n", "columns"),
    ('instrument_code,nlk,display,loinc,unit,unit_aliases\n"CRP,N1\n', "columns"),
])
def test_malformed_code_maps_name_file_and_line(tmp_path, text, needle):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(CodeMapError, match=needle):
        load_code_map("bad", tmp_path)


def test_code_map_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "latin.csv").write_bytes(
        "instrument_code,nlk,display,loinc,unit,unit_aliases\nHb,NOR05172,Hæmoglobin,,g/dL,\n"
        .encode("latin-1"))
    with pytest.raises(CodeMapError, match=r"latin\.csv: not UTF-8"):
        load_code_map("latin", tmp_path)


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b", "", "missing"])
def test_code_map_names_cannot_escape_the_folder(tmp_path, name):
    with pytest.raises(CodeMapError):
        load_code_map(name, tmp_path)


def test_malformed_control_targets(tmp_path):
    head = "analysis,lot,material,level,low,high,unit\n"
    for body, needle in [("NPU1,L1,,,x,3,\n", "not a number"), ("NPU1,L1,,,5,3,\n", "above"),
                         ("NPU1,,,,1,3,\n", "lot or material")]:
        (tmp_path / "control_targets.csv").write_text(head + body)
        with pytest.raises(CodeMapError, match=needle):
            load_control_targets(tmp_path)


def _run(value, lot=None, material=None, at=T0, analysis="NPU19748"):
    return QcRun("S1", analysis, value, str(value), "mg/L", material, lot, None, "OP1", at)


def test_targets_match_lot_first_then_material_and_judge_inclusively():
    targets = Targets([ControlTarget("NPU19748", "L1", "Ctrl II", None, 22, 34, "mg/L"),
                       ControlTarget("NPU19748", None, "Ctrl I", None, 5, 9, "mg/L")])
    assert targets.judge(_run(22, lot="l1"))[0] is True
    assert targets.judge(_run(34.0001, lot="L1"))[0] is False
    assert targets.judge(_run(7, material="ctrl i"))[0] is True
    assert targets.judge(_run(7, lot="unknown"))[0] is None       # no target: not judged
    assert targets.judge(_run(None, lot="L1"))[0] is None
    assert targets.judge(_run(27, lot="L1", analysis="NPU27300"))[0] is None


def test_normalise_reads_astm_and_poct_events():
    astm = normalise({"instrument_serial": "A1", "analysis_code": "NPU19748", "value": 27,
                      "lot": "10012345", "material": "CI-LOT 10012345",
                      "time": "2025-03-14T07:54:00+01:00"}, serial=None, received=T0)
    assert (astm.instrument, astm.analysis, astm.lot) == ("A1", "NPU19748", "10012345")
    assert astm.performed_at == datetime(2025, 3, 14, 6, 54, tzinfo=timezone.utc)
    poct = normalise({"device_serial": None, "analysis_code": "CRP", "nlk": "NPU19748",
                      "value": 41.0, "control_lot": "CII-55821", "control_level": "II",
                      "control_name": "CRP Control II", "time": None}, serial="P1", received=T0)
    assert (poct.instrument, poct.analysis, poct.level, poct.performed_at) == \
        ("P1", "NPU19748", "II", T0)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), min_size=1, max_size=30))
def test_judged_state_is_the_latest_run_whatever_the_arrival_order(runs):
    j = Judged()
    for passed, minute in runs:
        j.add(passed, T0 + timedelta(minutes=minute))
    latest = max(m for _, m in runs)
    decisive = [p for p, m in runs if m == latest][-1]    # ties: the later arrival counts
    assert j.last_failed is (not decisive)
    assert j.last_run == T0 + timedelta(minutes=latest)
    passes = [m for p, m in runs if p]
    assert j.last_passed == (T0 + timedelta(minutes=max(passes)) if passes else None)


def test_operator_certification_by_analysis_site_and_expiry():
    op = OperatorInfo("OP1", "", None, frozenset({"NPU19748"}), frozenset({"A"}), "1",
                      date(2025, 3, 14))
    assert op.certified("NPU19748", T0, "A")
    assert not op.certified("NPU27300", T0, "A")
    assert not op.certified("NPU19748", T0, "B")
    assert not op.certified("NPU19748", T0 + timedelta(days=1), "A")
    anywhere = OperatorInfo("OP2", "", None, frozenset({"*"}), frozenset(), "1", None)
    assert anywhere.certified("NPU01685", T0, "Z")


def test_instrument_interval_override_is_applied_through_the_rule_lookup():
    cfg = instrument_config()
    cfg["instruments"][0] = {**cfg["instruments"][0], "qc_interval_minutes": {"NPU19748": 60}}
    registry = Registry(parse(cfg), {"NPU19748": 1440})
    from gateway.instruments.registry import InstrumentInfo
    i = cfg["instruments"][0]
    registry.instruments = {i["serial"]: InstrumentInfo(
        i["serial"], "", "", "astm", "poc-astm", "crp-poc", frozenset(i["analyses"]),
        {"NPU19748": 60}, True)}
    registry.note_qc(QcRun(i["serial"], "NPU19748", 27, "27", "mg/L", None, "L", None, None, T0),
                     True)
    state = registry.qc_state(i["serial"], "NPU19748")
    # The rule sees "older than 1440 min" exactly when the run is older than 60 min.
    assert state.last_passed == T0 - timedelta(minutes=1380) and not state.last_failed
    assert registry.qc_summary(i["serial"], "NPU19748", T0 + timedelta(minutes=61))["state"] == "overdue"
    assert registry.qc_summary(i["serial"], "NPU19748", T0 + timedelta(minutes=59))["state"] == "ok"
    assert registry.qc_state("other", "NPU19748") is None


@pytest.mark.parametrize("change,needle", [
    (lambda c: c["instruments"].append(dict(c["instruments"][0])), "used twice"),
    (lambda c: c["instruments"][0].update(system="nobody"), "instruments[0].system"),
    (lambda c: c["instruments"][0].update(protocol="hl7"), "instruments[0].protocol"),
    (lambda c: c["instruments"][0].update(analyses=[]), "instruments[0].analyses"),
    (lambda c: c["operators"].append(dict(c["operators"][0])), "operators[2].id"),
    (lambda c: c["operators"][0].update(hpr="12x"), "operators[0].hpr"),
    (lambda c: c.update(qc_targets=[{"analysis": "N", "low": 1, "high": 2}]), "lot or material"),
])
def test_bad_instrument_configuration_names_the_key(change, needle):
    cfg = instrument_config()
    change(cfg)
    with pytest.raises(ConfigError) as e:
        parse(cfg)
    assert needle in str(e.value)


def test_unknown_code_map_fails_start_up_with_its_name():
    cfg = instrument_config()
    cfg["instruments"][0] = {**cfg["instruments"][0], "code_map": "no-such-map"}
    with pytest.raises(ConfigError, match="no-such-map"):
        Registry(parse(cfg), {})
