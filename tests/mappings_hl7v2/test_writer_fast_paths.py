"""The outbound writer's shortcuts write what the plain algorithm writes.

``escape``, ``writer.component``/``hd`` and the caches in ``from_fhir`` skip
work for the common case (nothing to escape, repeated values); these tests
hold them to the straightforward versions, including the errors raised for
values a bundle should not hold.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2 import from_fhir
from mappings.hl7v2 import writer as w
from mappings.hl7v2.escape import escape
from mappings.hl7v2.separators import DEFAULT, Separators
from mappings.hl7v2.timestamps import to_v2, v2_now

SEPARATOR_SETS = [DEFAULT, Separators("^", "~", "|", "\\", "&"), Separators(truncation="#")]
TEXT = st.text(alphabet=st.sampled_from("ab ø😀|^~\\&#\r\n"), max_size=12)
LEAF = st.one_of(TEXT, st.none(), st.just(""))
PART = st.one_of(LEAF, st.lists(LEAF, max_size=4))


def _translate_only(text, seps):
    """escape() without its shortcut."""
    if not text:
        return text
    e = seps.escape
    specials = {seps.escape: f"{e}E{e}", seps.field: f"{e}F{e}", seps.component: f"{e}S{e}",
                seps.subcomponent: f"{e}T{e}", seps.repetition: f"{e}R{e}",
                "\r": f"{e}X0D{e}", "\n": f"{e}.br{e}"}
    if seps.truncation:
        specials[seps.truncation] = f"{e}P{e}"
    return text.translate({ord(c): v for c, v in specials.items()})


def _component_part_by_part(parts):
    """writer.component() without its shortcut."""
    out = []
    for p in parts:
        if isinstance(p, list):
            out.append("&".join(_translate_only(s or "", DEFAULT) for s in p).rstrip("&"))
        else:
            out.append(_translate_only(p or "", DEFAULT))
    return "^".join(out).rstrip("^")


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except Exception as e:      # noqa: BLE001 - the error itself is what is compared
        return type(e).__name__, str(e)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.sampled_from(SEPARATOR_SETS))
def test_escape_matches_translate(text, seps):
    assert escape(text, seps) == _translate_only(text, seps)


@settings(max_examples=300, deadline=None)
@given(st.lists(PART, max_size=6))
def test_component_matches_part_by_part(parts):
    assert w.component(parts) == _component_part_by_part(parts)


@pytest.mark.parametrize("parts", [
    ["a", 1], ["a", 1.5], ["a", True], [["a", 2]], ["a", {"x": 1}], None, "a|b", ("a", "b"),
])
def test_component_odd_values_fail_or_pass_as_before(parts):
    assert _outcome(w.component, parts) == _outcome(_component_part_by_part, parts)


@pytest.mark.parametrize("fields, segment", [
    (["1", "", ""], "OBX|1"), (["", ""], "OBX"), ([], "OBX"), (["", "x", 0, None, ""], "OBX||x"),
])
def test_segment_drops_trailing_empty_fields(fields, segment):
    assert w.segment("OBX", fields) == segment


@pytest.mark.parametrize("value", ["", "APP", "APP^FAC^L", "A|B^C", "x^^", None, 5, ["a"]])
def test_hd_same_for_repeated_and_odd_values(value):
    def plain(v):
        return _component_part_by_part(v.split("^")) if v else ""
    assert _outcome(w.hd, value) == _outcome(plain, value)
    assert _outcome(w.hd, value) == _outcome(plain, value)      # again, from the cache


@pytest.mark.parametrize("value", [
    0.0, -0.0, 13.2, 1e-7, 1e22, 0.1 + 0.2, float("inf"), float("-inf"), float("nan"),
    3, -4, True, False, 10**18,
])
def test_cached_numbers_match_format_number(value):
    for _ in range(2):      # the second time from the cache
        assert from_fhir._number({"value": value}) == dt.format_number(value)


def test_negative_and_positive_zero_are_cached_apart():
    assert (from_fhir._number({"value": -0.0}), from_fhir._number({"value": 0.0})) == \
        (dt.format_number(-0.0), dt.format_number(0.0)) == ("-0.0", "0.0")


@pytest.mark.parametrize("value", [
    "", "2025", "2025-03-14", "2025-03-14T09:25:00+01:00", "2025-03-14T09:25:00.12345Z",
    "garbage", None, 5, ["2025"],
])
def test_cached_times_match_to_v2(value):
    for _ in range(2):
        assert _outcome(from_fhir._v2_time, value) == _outcome(to_v2, value)


def test_one_practitioner_named_on_many_results_is_written_alike():
    prac = {"resourceType": "Practitioner", "identifier": [{"system": "urn:x", "value": "P1"}],
            "name": [{"family": "Hansen|Berg", "given": ["Kari"]}]}
    writer = from_fhir._Writer({"entry": [{"fullUrl": "urn:p", "resource": prac}]})
    first = writer.encode_person(writer.person({"reference": "urn:p"}))
    assert first == w.component(dt.practitioner_to_xcn(prac))
    assert first.startswith("P1^Hansen\\F\\Berg^Kari^")
    assert writer.encode_person(writer.person({"reference": "urn:p"})) == first
    assert writer.encode_person(writer.person({"reference": "urn:none"})) == ""


OFFSETS = st.one_of(
    st.none(), st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                             max_value=timedelta(hours=23, minutes=59)).map(timezone),
    st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))),
    st.sampled_from([ZoneInfo("Europe/Oslo"), ZoneInfo("America/St_Johns"), timezone.utc]))


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30)), OFFSETS)
def test_msh_time_matches_v2_now(ts, tz):
    ts = ts.replace(tzinfo=tz)
    assert w.msh_time(ts) == v2_now(ts)


@pytest.mark.parametrize("ts", ["2025-03-14", None, date(2025, 3, 14), 5])
def test_msh_time_fails_like_v2_now(ts):
    assert _outcome(w.msh_time, ts) == _outcome(v2_now, ts)


def test_obr24_category_and_obx5_time_are_escaped():
    """Both were written as given: a delimiter in a FHIR code broke the segment."""
    from datetime import datetime, timezone

    from mappings.hl7v2.from_fhir import bundle_to_oru_r01
    from mappings.hl7v2.parser import parse
    pat = {"reference": "urn:uuid:p"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [
            {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13116900216"}]}},
        {"fullUrl": "urn:uuid:r", "resource": {
            "resourceType": "DiagnosticReport", "status": "final", "subject": pat,
            "code": {"coding": [{"system": "urn:labgate:local", "code": "X"}]},
            "category": [{"coding": [{"code": "LAB|^~&"}]}], "result": [{"reference": "urn:uuid:o"}]}},
        {"fullUrl": "urn:uuid:o", "resource": {
            "resourceType": "Observation", "status": "final", "subject": pat,
            "code": {"coding": [{"system": "urn:labgate:local", "code": "T"}]},
            "valueTime": "10:|5:00"}}]}
    msg = parse(bundle_to_oru_r01(bundle, control_id="C",
                                  timestamp=datetime(2025, 3, 14, tzinfo=timezone.utc)))
    assert msg.get("OBR", 24) == "LAB|^~&"
    assert msg.get("OBX", 5) == "10|500"
