"""Norwegian identifier checks (mappings/identifiers.py)."""
from datetime import date

import pytest
from hypothesis import assume, given, settings, strategies as st
from stdnum.no import fodselsnummer as stdnum_fnr
from stdnum.no import orgnr as stdnum_orgnr

from mappings import identifiers as ids

TODAY = date(2025, 3, 14)


@pytest.mark.parametrize("value,kind", [
    ("13116900216", ids.FNR),     # NILAR test person
    ("12057900499", ids.FNR),     # NILAR test person
    ("41019044120", ids.DNR),     # DOMAIN.md §1.2 [OWN]
    ("12528510033", ids.HNR),     # DOMAIN.md §1.2 [OWN]
])
def test_domain_examples_are_valid(value, kind):
    got = ids.check_person_number(value, TODAY)
    assert got == ids.IdCheck(kind, True, "", got.birth_date)
    assert got.birth_date is not None


def test_no_basis_example_fails_mod11():
    # 130574448 gives k1 = 10: no valid number has this prefix (DOMAIN.md §1.1)
    assert ids.person_check_digits("130574448") is None
    got = ids.check_person_number("13057444850", TODAY)
    assert (got.valid, got.reason) == (False, ids.REASON_CHECKSUM)


def test_birth_dates_and_offsets():
    assert ids.check_person_number("13116900216", TODAY).birth_date == date(1969, 11, 13)
    assert ids.check_person_number("41019044120", TODAY).birth_date == date(1990, 1, 1)
    assert ids.check_person_number("12528510033", TODAY).birth_date == date(1985, 12, 12)


@pytest.mark.parametrize("value", ["13116900217", "13116900226", "41019044121", "12528510043"])
def test_wrong_check_digits(value):
    got = ids.check_person_number(value, TODAY)
    assert (got.valid, got.reason) == (False, ids.REASON_CHECKSUM)


def _with_check(first9: str) -> str:
    k = ids.person_check_digits(first9)
    assert k is not None, first9
    return first9 + k


def _first_valid(prefix6: str, individuals) -> str:
    for ind in individuals:
        if ids.person_check_digits(f"{prefix6}{ind:03d}") is not None:
            return _with_check(f"{prefix6}{ind:03d}")
    raise AssertionError(prefix6)


def test_future_birth_date_is_rejected_relative_to_today():
    number = _first_valid("010125", range(500, 1000))       # born 2025-01-01
    assert ids.check_person_number(number, date(2025, 3, 14)).valid
    got = ids.check_person_number(number, date(2024, 12, 31))
    assert (got.valid, got.reason) == (False, ids.REASON_FUTURE)


@pytest.mark.parametrize("prefix6", ["310299", "300299", "001090", "321090", "011390"])
def test_impossible_dates(prefix6):
    number = _first_valid(prefix6, range(0, 500))
    got = ids.check_person_number(number, TODAY)
    assert (got.valid, got.reason) == (False, ids.REASON_DATE)


def test_century_gap_is_a_date_error():
    # individual 750-899 with YY >= 40 has no century (DOMAIN.md §1.1)
    number = _first_valid("010150", range(750, 900))
    assert ids.check_person_number(number, TODAY).reason == ids.REASON_DATE


def test_fh_number_has_no_date_but_check_digits():
    number = _first_valid("812345", range(0, 1000))
    got = ids.check_person_number(number, TODAY)
    assert (got.kind, got.valid, got.birth_date) == (ids.FHNR, True, None)
    bad = number[:10] + str((int(number[10]) + 1) % 10)
    assert ids.check_person_number(bad, TODAY).reason == ids.REASON_CHECKSUM


def test_tenor_numbers_need_the_flag():
    number = _first_valid("018190", range(0, 500))      # month 01 + 80
    got = ids.check_person_number(number, TODAY)
    assert (got.valid, got.reason, got.synthetic) == (False, ids.REASON_SYNTHETIC, True)
    ok = ids.check_person_number(number, TODAY, allow_synthetic=True)
    assert (ok.valid, ok.kind, ok.synthetic, ok.birth_date) == (True, ids.FNR, True, date(1990, 1, 1))


@pytest.mark.parametrize("value", ["", "1311690021", "131169002160", "1311690021X",
                                   "13116900216\n", "١٣١١٦٩٠٠٢١٦", " 3116900216"])
def test_format_errors(value):
    assert ids.check_person_number(value, TODAY).reason == ids.REASON_FORMAT


def test_hpr_org_her():
    assert ids.check_hpr("9144889").valid and ids.check_hpr("123456789").valid
    for bad in ("123456", "1234567890", "12345a7", ""):
        assert not ids.check_hpr(bad).valid
    assert ids.check_org_number("974760673").valid          # Brønnøysundregistrene
    assert ids.check_org_number("974760674").reason == ids.REASON_CHECKSUM
    assert ids.check_org_number("97476067").reason == ids.REASON_FORMAT
    assert ids.check_her_id("8094").valid and not ids.check_her_id("80-94").valid


# --- properties ----------------------------------------------------------------

@st.composite
def valid_person_numbers(draw):
    kind = draw(st.sampled_from([ids.FNR, ids.DNR, ids.HNR, ids.FHNR]))
    if kind == ids.FHNR:
        first9 = draw(st.sampled_from("89")) + draw(st.text("0123456789", min_size=8, max_size=8))
    else:
        born = draw(st.dates(date(1854, 1, 1), TODAY))
        yy = born.year % 100
        if born.year < 1900:
            ind = draw(st.integers(500, 749)); assume(yy >= 54)
        elif born.year < 2000:
            ind = draw(st.integers(0, 499) | (st.integers(900, 999) if yy >= 40 else st.nothing()))
        else:
            ind = draw(st.integers(500, 999)); assume(yy < 40)
        day = born.day + (40 if kind == ids.DNR else 0)
        month = born.month + (40 if kind == ids.HNR else 0)
        first9 = f"{day:02d}{month:02d}{yy:02d}{ind:03d}"
    check = ids.person_check_digits(first9)
    assume(check is not None)
    return kind, first9 + check


@settings(max_examples=300, deadline=None)
@given(valid_person_numbers())
def test_generated_valid_numbers_pass(case):
    kind, number = case
    got = ids.check_person_number(number, TODAY)
    assert got.valid and got.kind == kind


@settings(max_examples=300, deadline=None)
@given(valid_person_numbers(), st.integers(0, 10), st.integers(1, 9))
def test_any_single_digit_change_fails(case, pos, delta):
    _, number = case
    digit = (int(number[pos]) + delta) % 10
    changed = number[:pos] + str(digit) + number[pos + 1:]
    assert not ids.check_person_number(changed, TODAY).valid


@settings(max_examples=500, deadline=None)
@given(st.text("0123456789", min_size=11, max_size=11))
def test_agrees_with_python_stdnum(number):
    # stdnum knows FNR/D/H but not FH-numbers, Tenor, or D+H combined.
    assume(number[0] not in "89" and number[2] not in "89")
    assume(not (number[0] in "4567" and number[2] in "45"))
    today = date.today()
    assert ids.check_person_number(number, today).valid == stdnum_fnr.is_valid(number)


@settings(max_examples=300, deadline=None)
@given(st.text("0123456789", min_size=9, max_size=9))
def test_org_number_agrees_with_python_stdnum(number):
    assert ids.check_org_number(number).valid == stdnum_orgnr.is_valid(number)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_never_raises_on_any_text(value):
    got = ids.check_person_number(value, TODAY)
    assert isinstance(got, ids.IdCheck)
    ids.check_hpr(value), ids.check_org_number(value), ids.check_her_id(value)
