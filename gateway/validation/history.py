"""Bounded in-memory history the stateful rules read synchronously.

``DELTA-CHECK`` needs the patient's previous results and ``ORDER-DUPLICATE``
their recent orders. validate() is synchronous and on the hot path, so these
come from memory: a :class:`History` keyed by (patient key, analysis code),
least recently used keys dropped first. The gateway fills it at start-up
from the ``validation_result`` / ``validation_order`` index tables and adds
each accepted message's facts as it accepts them (gateway/validator.py).

Patients are keyed by :func:`patient_key`, a SHA-256 of the person number,
so the number is not written out in this structure or the index tables.
This is pseudonymisation, not protection: person numbers are few enough
(about 10^7 valid ones per birth year range) that the hash can be reversed
by trying them all, so the index tables are patient data and are protected
like the message table. The same hash is computed in SQL by migration 0008.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


def patient_key(person_number: str) -> str:
    """Stable pseudonymous key for a person number (hex SHA-256)."""
    return hashlib.sha256(person_number.strip().encode("utf-8")).hexdigest()


class History(Generic[T]):
    """(patient key, analysis) -> up to ``per_key`` entries, newest first.

    ``time_of`` gives an entry's time; entries are kept sorted by it, so a
    late-arriving older result does not hide a newer one.
    """

    def __init__(self, time_of, *, max_keys: int = 200_000, per_key: int = 4):
        self._time_of = time_of
        self._max_keys = max_keys
        self._per_key = per_key
        self._data: OrderedDict[tuple[str, str], list[T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, analysis: str) -> list[T]:
        got = self._data.get((key, analysis))
        if got is None:
            return []
        self._data.move_to_end((key, analysis))
        return got

    def add(self, key: str, analysis: str, entry: T) -> None:
        k = (key, analysis)
        entries = self._data.get(k)
        if entries is None:
            entries = self._data[k] = []
            if len(self._data) > self._max_keys:
                self._data.popitem(last=False)
        else:
            self._data.move_to_end(k)
        t: datetime = self._time_of(entry)
        pos = 0
        while pos < len(entries) and self._time_of(entries[pos]) > t:
            pos += 1
        if pos < len(entries) and entries[pos] == entry:
            return              # the same fact again (a resent message)
        entries.insert(pos, entry)
        del entries[self._per_key:]
