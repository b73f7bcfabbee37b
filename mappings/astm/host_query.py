"""ASTM host queries (Q records): what is asked, and the O records that answer it.

An instrument that reads a specimen barcode may ask the host which tests to
run: ``Q|1|^LID0004712||ALL||||||||O`` (DOMAIN.md §3.3, E8). Q-3 holds one
or more ranges ``patient id ^ specimen id``; Q-5 the tests (``ALL`` or
universal test ids); Q-13 the request status [K].

:func:`query_from_record` reads a Q record (duck-typed: anything with the
``get``/``repeats`` methods of ``adapters.astm.records.Record``);
:func:`answer_records` builds the answer as plain value lists, which
``adapters.astm.e1394.build_records`` encodes (mappings do not import
adapters)::

    records = answer_records(queries, open_orders, sender="LABGATE")
    reply = AstmReply(messages=[build_records(records)])

Open orders are plain dicts ``{"specimen_id": "LID0004712", "patient_id":
"13116900216", "tests": ["INR", "CRP"]}`` with instrument test codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# O-26 report types (LIS02-A2 [K]): Q = response to query, Y = no order on record.
REPORT_QUERY_RESPONSE = "Q"
REPORT_NO_ORDER = "Y"


@dataclass(frozen=True, slots=True)
class HostQuery:
    """What one Q record asks for."""
    sequence: str
    patient_ids: tuple[str, ...]
    specimen_ids: tuple[str, ...]
    tests: tuple[str, ...]          # empty = all tests
    status: str                     # Q-13, e.g. "O" (orders), "A" (cancel)


def _test_code(components: list[str]) -> str:
    if len(components) >= 4 and components[3].strip():
        return components[3].strip()
    return next((c.strip() for c in components if c.strip()), "")


def query_from_record(q, *, bare_id_is_specimen: bool = True) -> HostQuery:
    """Read a Q record.

    Instruments differ in where they put the specimen id: the standard
    place is the second component of Q-3 (``^LID0004712``); some send it
    bare (``VALI200301``). With ``bare_id_is_specimen`` a bare id counts as
    both a patient id and a specimen id.
    """
    patients, specimens = [], []
    for rep in q.repeats(3):
        pid = rep[0].strip() if rep else ""
        sid = rep[1].strip() if len(rep) > 1 else ""
        if pid:
            patients.append(pid)
        if sid:
            specimens.append(sid)
        elif pid and bare_id_is_specimen:
            specimens.append(pid)
    tests = [_test_code(rep) for rep in q.repeats(5)]
    tests = [t for t in tests if t and t.upper() != "ALL"]
    return HostQuery(q.get(2).strip(), tuple(patients), tuple(specimens), tuple(tests),
                     q.get(13).strip().upper())


def find_orders(query: HostQuery, open_orders: list[dict]) -> list[dict]:
    """The open orders ``query`` asks about (by specimen id, else by patient id),
    each with its tests narrowed to the ones asked for."""
    found = []
    for order in open_orders:
        sid = str(order.get("specimen_id") or "")
        pid = str(order.get("patient_id") or "")
        if not ((sid and sid in query.specimen_ids) or (pid and pid in query.patient_ids)):
            continue
        tests = [t for t in order.get("tests", []) if not query.tests or t in query.tests]
        if tests:
            found.append({**order, "tests": tests})
    return found


def _order_record(seq: int, specimen_id: str, tests: list[str], report_type: str,
                  action_code: str) -> list:
    values: list = ["O", str(seq), specimen_id, "",
                    [["", "", "", t] for t in tests] or "ALL", "R"]
    # O-7..O-11 empty, O-12 action code, O-13..O-25 empty, O-26 report type
    values += [""] * 5 + [action_code] + [""] * 13 + [report_type]
    return values


def answer_records(queries: list[HostQuery], open_orders: list[dict], *,
                   sender: str = "LABGATE", receiver: str = "",
                   now: datetime | None = None, action_code: str = "N") -> list[list]:
    """H, P/O groups and L answering ``queries`` from ``open_orders``.

    Matching orders come as one P per patient and one O per specimen with
    its tests as repeats of O-5 and report type ``Q``; a query with no match
    is answered with an O of report type ``Y`` (no order on record) for each
    specimen asked about.
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d%H%M%S")
    records: list[list] = [["H", "", "", "", sender, "", "", "", "", receiver, "", "P", "1", stamp]]
    p_seq = 0
    for query in queries:
        matches = find_orders(query, open_orders)
        groups: dict[str, list[dict]] = {}
        for order in matches:
            groups.setdefault(str(order.get("patient_id") or ""), []).append(order)
        if not matches:
            asked = query.specimen_ids or ("",)
            groups = {(query.patient_ids or ("",))[0]: [
                {"specimen_id": s, "tests": list(query.tests), "_none": True} for s in asked]}
        for patient_id, orders in groups.items():
            p_seq += 1
            records.append(["P", str(p_seq), patient_id])
            for o_seq, order in enumerate(orders, 1):
                report = REPORT_NO_ORDER if order.get("_none") else REPORT_QUERY_RESPONSE
                records.append(_order_record(o_seq, str(order.get("specimen_id") or ""),
                                             list(order["tests"]), report, action_code))
    records.append(["L", "1", "N"])
    return records
