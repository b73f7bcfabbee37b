"""Collection time, time order and specimen age rules."""
import pytest

from mappings import systems


def _with(h, *, collected=None, effective=None, analysed=None, issued=None,
          code="NPU19748", value=27, unit="mg/L", spec="BLDC", containers=(), temperature=None):
    b = h.B()
    pat = b.patient()
    sp = b.specimen(spec, collected=collected, containers=containers,
                    temperature=temperature, patient=pat)
    b.observation(code, value, unit, patient=pat, specimen=sp, effective=effective,
                  analysed=analysed, issued=issued)
    return b.bundle()


def test_collection_time_on_specimen_or_observation(h):
    assert h.codes(_with(h, collected=h.COLLECTED, effective=None)) == []
    assert h.codes(_with(h, collected=None, effective=h.COLLECTED)) == []


@pytest.mark.parametrize("collected,effective", [(None, None), ("2025-03-14", None),
                                                 (None, "2025-03-14"), (None, "2025-03")])
def test_collection_time_missing_or_without_time_of_day(h, collected, effective):
    issues = h.validate(_with(h, collected=collected, effective=effective), h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("COLLECTION-TIME-MISSING", "error")]


def test_collection_in_the_future(h):
    future = "2025-03-14T10:20:00+01:00"                 # NOW is 10:00
    bundle = _with(h, collected=future, effective=future, analysed=None)
    assert h.codes(bundle).count("COLLECTION-TIME-FUTURE") == 2


def test_clock_skew_tolerance(h):
    from datetime import timedelta
    soon = "2025-03-14T10:03:00+01:00"
    bundle = _with(h, collected=soon, effective=soon, analysed=None)
    assert h.codes(bundle) == []                          # within the default 5 min
    assert "COLLECTION-TIME-FUTURE" in h.codes(bundle, h.ctx(clock_skew=timedelta(0)))


def test_utc_times_compare_correctly(h):
    # 09:30Z is 10:30 Oslo time, after NOW (10:00+01:00)
    assert "COLLECTION-TIME-FUTURE" in h.codes(
        _with(h, collected="2025-03-14T09:30:00Z", effective=None, analysed=None))
    assert h.codes(_with(h, collected="2025-03-14T08:25:00Z", effective=None)) == []


@pytest.mark.parametrize("field", ["analysed", "issued", "effective"])
def test_times_before_collection_are_rejected(h, field):
    early = "2025-03-14T09:00:00+01:00"                   # collection is 09:25
    kw = {"collected": h.COLLECTED, "effective": h.COLLECTED, "analysed": h.ANALYSED}
    kw[field] = early
    issues = h.validate(_with(h, **kw), h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("ANALYSIS-BEFORE-COLLECTION", "error")]


def test_analysis_a_minute_before_collection_is_tolerated(h):
    bundle = _with(h, collected=h.COLLECTED, effective=h.COLLECTED,
                   analysed="2025-03-14T09:24:00+01:00")
    assert h.codes(bundle) == []


@pytest.mark.parametrize("code,unit,spec,minutes,containers,temperature,too_old", [
    ("32693-4", "mmol/L", "BLDV", 14, (), None, False),       # lactate 15 min
    ("32693-4", "mmol/L", "BLDV", 20, (), None, True),
    ("32693-4", "mmol/L", "BLDV", 60, (), "ice", False),       # on ice 90 min
    ("32693-4", "mmol/L", "BLDV", 100, ("NaF",), None, False), # NaF tube 120 min
    ("NPU03230", "mmol/L", "PLAS", 150, (), None, True),      # K 2 h
    ("NPU03230", "mmol/L", "PLAS", 150, ("HEPL",), "room", False),  # Li-hep RT 4 h
    ("NPU01685", "1", "PLAS", 600, (), None, False),          # INR 24 h
    ("NPU01685", "1", "PLAS", 30, (), "cold", True),          # INR never refrigerated
    ("2746-6", "[pH]", "BLDV", 20, ("capillary",), None, True),  # capillary 10 min
    ("NPU19748", "mg/L", "BLDC", 6000, (), None, False),      # CRP: no limit known
])
def test_specimen_age_against_stability_table(h, code, unit, spec, minutes, containers,
                                              temperature, too_old):
    from datetime import datetime, timedelta
    analysed = (datetime.fromisoformat(h.COLLECTED) + timedelta(minutes=minutes)).isoformat()
    value = {"mmol/L": 3.0, "1": 2.0, "[pH]": 7.35, "mg/L": 10}[unit]
    bundle = _with(h, collected=h.COLLECTED, effective=h.COLLECTED, analysed=analysed,
                   code=code, value=value, unit=unit, spec=spec, containers=containers,
                   temperature=temperature)
    system = systems.LOINC if code[0].isdigit() else systems.NLK
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "Observation":
            e["resource"]["code"]["coding"][0]["system"] = system
    ctx = h.ctx(now=h.NOW + timedelta(days=1))
    assert h.codes(bundle, ctx) == (["SPECIMEN-TOO-OLD"] if too_old else [])


def test_no_analysis_time_no_age_check(h):
    bundle = _with(h, collected=h.COLLECTED, effective=h.COLLECTED, analysed=None,
                   issued="2025-03-14T09:59:00+01:00", code="32693-4", value=2.0,
                   unit="mmol/L", spec="BLDV")
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "Observation":
            e["resource"]["code"]["coding"][0]["system"] = systems.LOINC
    assert h.codes(bundle) == []
