"""v2 timestamps ⇄ FHIR date/dateTime/instant at their precision."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.hl7v2.timestamps import (to_fhir_date, to_fhir_datetime, to_fhir_instant, to_v2,
                                       v2_now)


@pytest.mark.parametrize("v2, fhir", [
    ("2025", "2025"), ("202503", "2025-03"), ("20250314", "2025-03-14"),
    ("2025031409", "2025-03-14T09:00:00+01:00"),
    ("202503140925", "2025-03-14T09:25:00+01:00"),
    ("20250314092512", "2025-03-14T09:25:12+01:00"),
    ("20250314092512.1234", "2025-03-14T09:25:12.1234+01:00"),
    ("20250314092512-0500", "2025-03-14T09:25:12-05:00"),
    ("20250701120000", "2025-07-01T12:00:00+02:00"),          # summer time in Oslo
    (" 20250314 ", "2025-03-14"),
])
def test_to_fhir_datetime(v2, fhir):
    assert to_fhir_datetime(v2) == fhir


@pytest.mark.parametrize("bad", ["", "DATE!", "196203520", "20250231", "2025031425",
                                 "20250314092560", "Aug 15, 1942", "20250314+9999"])
def test_unreadable(bad):
    assert to_fhir_datetime(bad) is None


def test_instant_needs_minutes_and_date_drops_time():
    assert to_fhir_instant("20250314") is None
    assert to_fhir_instant("2025031409") is None
    assert to_fhir_instant("202503140925") == "2025-03-14T09:25:00+01:00"
    assert to_fhir_date("20250314092512+0100") == "2025-03-14"
    assert to_fhir_date("1969") == "1969"


def test_to_v2_and_now():
    assert to_v2("2025-03-14T09:25:00+01:00") == "20250314092500+0100"
    assert to_v2("2025-03-14T09:25:00Z") == "20250314092500+0000"
    assert to_v2("1969-11") == "196911"
    assert to_v2("garbage") == ""
    assert v2_now(datetime(2025, 3, 14, 9, 32, 1, tzinfo=timezone(timedelta(hours=1)))) == \
        "20250314093201+0100"
    assert v2_now(datetime(2025, 3, 14, 9, 32, 1)) == "20250314093201+0000"


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
       st.sampled_from([4, 6, 8, 12, 14]))
def test_fhir_v2_fhir_round_trip(moment, precision):
    v2 = moment.strftime("%Y%m%d%H%M%S")[:precision]
    fhir = to_fhir_datetime(v2)
    assert fhir is not None
    assert to_fhir_datetime(to_v2(fhir)) == fhir
