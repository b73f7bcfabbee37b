"""Recognise and check Norwegian person, practitioner and organisation numbers.

Pure functions, no I/O. Sources: DOMAIN.md §1.1–§1.3.

Person numbers (11 digits, ``DDMMYY IIIKK``) come in four kinds that share
one mod-11 algorithm for the two check digits (§1.2):

- ``FNR``  fødselsnummer: the birth date as is.
- ``DNR``  D-nummer: day + 40 (first digit 4–7).
- ``HNR``  H-nummer (local help number): month + 40 (third digit 4–5).
- ``FHNR`` felles hjelpenummer: day field >= 80 (first digit 8–9); carries
  no birth date, so only the check digits are checked.

Skatteetaten's Tenor test numbers add 80 to the month. They are accepted
only when the caller says so (``allow_synthetic``); the result then has
``synthetic=True``.

Every check returns an :class:`IdCheck`; ``reason`` is one of the stable
``REASON_*`` codes below ("" when valid), so callers map it to rule codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

FNR = "FNR"
DNR = "DNR"
HNR = "HNR"
FHNR = "FHNR"
HPR = "HPR"
ORGNR = "ORGNR"
HER = "HER"
UNKNOWN = "UNKNOWN"

REASON_FORMAT = "FORMAT"        # wrong length or not all digits
REASON_CHECKSUM = "CHECKSUM"    # a mod-11 check digit is wrong (or impossible)
REASON_DATE = "DATE"            # no valid date / century after removing offsets
REASON_FUTURE = "FUTURE"        # birth date after ``today``
REASON_SYNTHETIC = "SYNTHETIC"  # Tenor test number while they are not allowed

_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_W_ORG = (3, 2, 7, 6, 5, 4, 3, 2)


@dataclass(frozen=True, slots=True)
class IdCheck:
    """The verdict on one identifier value."""
    kind: str              # FNR, DNR, HNR, FHNR, HPR, ORGNR, HER or UNKNOWN
    valid: bool
    reason: str = ""       # a REASON_* code, "" when valid
    birth_date: date | None = None
    synthetic: bool = False


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    """One mod-11 check digit, or None when the remainder makes it 10."""
    k = 11 - sum(w * (ord(c) - 48) for w, c in zip(weights, digits)) % 11
    if k == 11:
        return 0
    return None if k == 10 else k


def person_check_digits(first9: str) -> str | None:
    """The two check digits for nine leading digits, or None if none exist."""
    k1 = _mod11(first9, _W1)
    if k1 is None:
        return None
    k2 = _mod11(first9 + str(k1), _W2)
    if k2 is None:
        return None
    return f"{k1}{k2}"


def org_check_digit(first8: str) -> str | None:
    """The check digit for eight leading organisation-number digits."""
    k = _mod11(first8, _W_ORG)
    return None if k is None else str(k)


def classify_person_number(value: str) -> tuple[str, bool]:
    """The kind of an 11-digit person number and whether it is a Tenor one.

    Looks only at the offsets in the day and month fields; does not check
    anything else. Returns (UNKNOWN, False) for anything not 11 digits.
    """
    if len(value) != 11 or not value.isascii() or not value.isdigit():
        return UNKNOWN, False
    d0, m0 = value[0], value[2]
    if d0 in "89":
        return FHNR, False
    synthetic = m0 in "89"
    if d0 in "4567":
        return DNR, synthetic
    if m0 in "45":
        return HNR, False
    return FNR, synthetic


def _century(yy: int, individual: int) -> int | None:
    if individual < 500:
        return 1900
    if individual < 750 and yy >= 54:
        return 1800
    if yy < 40:
        return 2000
    if individual >= 900:
        return 1900
    return None


def _birth_date(value: str, kind: str, synthetic: bool) -> date | None:
    day, month, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    if kind == DNR:
        day -= 40
    if kind == HNR:
        month -= 40
    if synthetic:
        month -= 80
    century = _century(yy, int(value[6:9]))
    if century is None:
        return None
    try:
        return date(century + yy, month, day)
    except ValueError:
        return None


def check_person_number(value: str, today: date, *,
                        allow_synthetic: bool = False) -> IdCheck:
    """Check a fødselsnummer, D-, H- or felles hjelpenummer.

    ``today`` is the reference date for the "not born yet" check (pass the
    message's processing date, not the wall clock, to keep this pure).
    """
    kind, synthetic = classify_person_number(value)
    if kind == UNKNOWN:
        return IdCheck(UNKNOWN, False, REASON_FORMAT)
    if person_check_digits(value[:9]) != value[9:]:
        return IdCheck(kind, False, REASON_CHECKSUM, synthetic=synthetic)
    if synthetic and not allow_synthetic:
        return IdCheck(kind, False, REASON_SYNTHETIC, synthetic=True)
    if kind == FHNR:
        return IdCheck(FHNR, True)
    born = _birth_date(value, kind, synthetic)
    if born is None:
        return IdCheck(kind, False, REASON_DATE, synthetic=synthetic)
    if born > today:
        return IdCheck(kind, False, REASON_FUTURE, born, synthetic)
    return IdCheck(kind, True, "", born, synthetic)


def _digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def check_hpr(value: str) -> IdCheck:
    """HPR number: 7 to 9 digits, no check digit (DOMAIN.md §1.3 [K])."""
    ok = 7 <= len(value) <= 9 and _digits(value)
    return IdCheck(HPR, ok, "" if ok else REASON_FORMAT)


def check_org_number(value: str) -> IdCheck:
    """Organisasjonsnummer: 9 digits, mod-11 check digit (weights 3,2,7,6,5,4,3,2)."""
    if len(value) != 9 or not _digits(value):
        return IdCheck(ORGNR, False, REASON_FORMAT)
    if org_check_digit(value[:8]) != value[8]:
        return IdCheck(ORGNR, False, REASON_CHECKSUM)
    return IdCheck(ORGNR, True)


def check_her_id(value: str) -> IdCheck:
    """HER-id (Adresseregisteret): digits only, no check digit."""
    ok = 0 < len(value) <= 12 and _digits(value)
    return IdCheck(HER, ok, "" if ok else REASON_FORMAT)
