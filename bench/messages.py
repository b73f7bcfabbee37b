"""Benchmark messages: realistic 11-segment ORU^R01 with unique control ids
and valid Norwegian person numbers (fødselsnummer with both check digits).

Built here, independently of labgate's mappings, so the benchmark feeds the
gateway the way a point-of-care data manager would.
"""
from __future__ import annotations

import random
from datetime import date, timedelta

_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _check(digits: list[int], weights: tuple[int, ...]) -> int | None:
    k = 11 - sum(d * w for d, w in zip(digits, weights)) % 11
    if k == 11:
        return 0
    return None if k == 10 else k


def fnr(birth: date, serial: int) -> str:
    """A valid fødselsnummer for someone born in 1900-1999.

    ``serial`` picks the individual number (000-499 for those years); the
    first serial from there whose check digits both exist is used.
    """
    for s in range(serial % 500, serial % 500 + 500):
        ind = s % 500
        base = [int(c) for c in f"{birth:%d%m%y}{ind:03d}"]
        k1 = _check(base, _W1)
        if k1 is None:
            continue
        k2 = _check(base + [k1], _W2)
        if k2 is None:
            continue
        return "".join(map(str, base + [k1, k2]))
    raise ValueError("no valid number for that date")  # cannot happen: ~80 % of serials work


def person(i: int) -> tuple[str, str, str]:
    """(fnr, birth date YYYYMMDD, sex M/F) for patient number ``i``."""
    rnd = random.Random(i)
    birth = date(1930, 1, 1) + timedelta(days=rnd.randrange(0, 365 * 69))
    number = fnr(birth, rnd.randrange(0, 500))
    sex = "M" if int(number[8]) % 2 else "F"
    return number, f"{birth:%Y%m%d}", sex


def oru_r01(control_id: str, i: int = 0) -> bytes:
    """An 11-segment ORU^R01 (MSH PID PV1 ORC OBR OBX×4 NTE SPM), ~1.6 KB."""
    number, birth, sex = person(i)
    crp = 3 + i % 120
    segs = [
        "MSH|^~\\&|POCDM|LEGEVAKT-XBY^4210001^L|LABGW|KOMMUNE-XBY^4210000^L|20250314093200+0100||"
        f"ORU^R01^ORU_R01|{control_id}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"PID|1||{number}^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR||Hansen^Kari^Bench||{birth}|{sex}",
        "PV1|1|O|LEGEVAKT^^^LEGEVAKT-XBY",
        f"ORC|RE|ORD-{i}^EPJ|POC-{i}^POCDM||CM",
        f"OBR|1|ORD-{i}^EPJ|POC-{i}^POCDM|POCPANEL^POC-panel^L|||20250314092500|||OP017^Hansen^Kari"
        "||||||9144889^Koman^Magnar^^^^^^HPR&2.16.578.1.12.4.1.4.4&ISO||||||20250314093100|||F",
        "OBX|1|NM|NPU19748^P-C-reaktivt protein^NLK^1988-5^C reactive protein [Mass/volume] in Serum or Plasma^LN"
        f"||{crp}|mg/L^mg/L^UCUM|<5|{'H' if crp >= 5 else 'N'}|||F|||20250314092500||OP017^Hansen^Kari"
        "||AF2-000987^ACME-CRP|20250314093055",
        "OBX|2|NM|NOR05172^B-Hemoglobin^NLK^718-7^Hemoglobin [Mass/volume] in Blood^LN||13.2|g/dL^g/dL^UCUM"
        "|11.7-15.3|N|||F|||20250314092500||OP017^Hansen^Kari||HB-5521^ACME-HB|20250314092900",
        "OBX|3|NM|NPU02593^B-Leukocytter^NLK^6690-2^Leukocytes [#/volume] in Blood^LN||7.1|10*9/L^10*9/L^UCUM"
        "|3.5-10.0|N|||F|||20250314092500||OP017^Hansen^Kari||HB-5521^ACME-CBC|20250314092930",
        "OBX|4|NM|NPU03568^B-Trombocytter^NLK^777-3^Platelets [#/volume] in Blood^LN||254|10*9/L^10*9/L^UCUM"
        "|145-390|N|||F|||20250314092500||OP017^Hansen^Kari||HB-5521^ACME-CBC|20250314092930",
        "NTE|1|L|Prøven er analysert på legevakten (pasientnær analyse).",
        "SPM|1|LID0004711||BLDC^Blood capillary^HL70487|||||||||||||20250314092500",
    ]
    return ("\r".join(segs) + "\r").encode("utf-8")
