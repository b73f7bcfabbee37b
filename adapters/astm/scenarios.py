"""Synthetic instrument sessions for the simulator (DOMAIN.md §3.3, E5–E8 style).

Each scenario is a list of transfers; a transfer is a list of E1394
messages (bytes, CR-terminated records) sent between one ENQ and its EOT.
All persons are fictitious (NILAR test persons / generated numbers that
pass mod-11); device names are generic.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from .e1394 import build_records

SCENARIOS = ("crp", "hba1c", "inr", "qc", "query")


def _ts(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


def crp_patient(now: datetime) -> bytes:
    """A CRP patient result (capillary blood, point of care)."""
    device = ["CRP-POC", "1.2", "AF2-000987"]
    return build_records([
        ["H", "", "", "", device, "", "", "", "", "LIS", "", "P", "1", _ts(now)],
        ["P", "1", "13116900216", "", "", ["Danser", "Line"], "", "19691113", "F"],
        ["O", "1", "LID0004711", "", ["", "", "", "CRP"], "R", "",
         _ts(now - timedelta(minutes=6)), "", "", "OP017", "N", "", "", "", ["B", "capillary"]],
        ["R", "1", ["", "", "", "CRP"], "27", "mg/L", "<5", "H", "", "F", "", "OP017",
         _ts(now - timedelta(minutes=2)), _ts(now - timedelta(seconds=30)),
         ["CRP-POC", "AF2-000987"]],
        ["L", "1", "N"],
    ])


def crp_qc(now: datetime) -> bytes:
    """A CRP control run (H-12 = Q, O-12 = Q)."""
    device = ["CRP-POC", "1.2", "AF2-000987"]
    return build_records([
        ["H", "", "", "", device, "", "", "", "", "", "", "Q", "1", _ts(now)],
        ["O", "1", "CI-LOT 10012345", "", ["", "", "", "CRP"], "R", "",
         _ts(now - timedelta(minutes=3)), "", "", "OP017", "Q"],
        ["R", "1", ["", "", "", "CRP"], "27", "mg/L", "22-34", "", "", "F", "", "OP017", "",
         _ts(now - timedelta(minutes=1)), ["CRP-POC", "AF2-000987"]],
        ["L", "1", "N"],
    ])


def host_query(now: datetime, specimen_id: str = "LID0004712",
               device: tuple[str, str, str] = ("CRP-POC", "1.2", "AF2-000987")) -> bytes:
    """A host query: which tests should run for ``specimen_id``?"""
    return build_records([
        ["H", "", "", "", list(device), "", "", "", "", "", "", "P", "1", _ts(now)],
        ["Q", "1", ["", specimen_id], "", "ALL", "", "", "", "", "", "", "", "O"],
        ["L", "1", "N"],
    ])


# DOMAIN.md E5–E8, record text exactly as documented.
E5_HBA1C = (b"H|\\^&|||HBA1C-POC^4.4.3^SN12345678|||||LIS||P|1|20250314093012\r"
            b"P|1|13116900216|||Danser^Line||19691113|F\r"
            b"O|1|LID0004711||^^^HbA1c|R||20250314092500|||BI-ANNE|N||||B^capillary\r"
            b"R|1|^^^HbA1c|53|mmol/mol|20-42|H||F||OP017|20250314092610|20250314093000|"
            b"HBA1C-POC^SN12345678\r"
            b"C|1|I|Reagent lot 1234567 exp 20260131|G\r"
            b"L|1|N\r")
E6_INR = (b"H|\\^&|||INR-POC^03.02^UU1234567|||||||P|1|20250314101500\r"
          b"P|1|41019044120|||Nordmann^Ola||19900101|M\r"
          b"O|1|||^^^INR|S||20250314101200||||N||||B^capillary\r"
          b"R|1|^^^INR|3.4|INR|2.0-3.0|H||F||HJ-SYKEPL-07||20250314101400|INR-POC^UU1234567\r"
          b"L|1|N\r")
E7_QC = (b"H|\\^&|||CRP-POC^1.2^AF2-000987|||||||Q|1|20250314075500\r"
         b"O|1|CI-LOT 10012345||^^^CRP|R||20250314075200|||OP017|Q\r"
         b"R|1|^^^CRP|27|mg/L|22-34|||F||OP017||20250314075400|CRP-POC^AF2-000987\r"
         b"L|1|N\r")
E8_QUERY = (b"H|\\^&|||INR-POC^03.02^UU1234567|||||||P|1|20250314100800\r"
            b"Q|1|^LID0004712||ALL||||||||O\r"
            b"L|1|N\r")


def transfers(scenario: str, now: datetime | None = None) -> list[list[bytes]]:
    """The transfers of ``scenario`` (one of :data:`SCENARIOS`)."""
    now = now or datetime.now().replace(microsecond=0)
    table = {
        # The morning's control run first, then a patient, then a worklist query.
        "crp": lambda: [[crp_qc(now)], [crp_patient(now)], [host_query(now)]],
        "hba1c": lambda: [[E5_HBA1C]],
        "inr": lambda: [[E6_INR]],
        "qc": lambda: [[E7_QC]],
        "query": lambda: [[E8_QUERY]],
    }
    if scenario not in table:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    return table[scenario]()


def has_query(messages: list[bytes]) -> bool:
    """True when a transfer carries a host query (so an answer is expected)."""
    return any(line.startswith(b"Q") for m in messages for line in m.split(b"\r"))
