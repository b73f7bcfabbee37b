"""What a rule may look at besides the bundle: time, tables, per-source
settings, and lookups the core supplies (each may be None; rules that need a
missing lookup are skipped)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Collection, Mapping, Union

from mappings.tables_loader import Tables


@dataclass(frozen=True, slots=True)
class QcState:
    """The gateway's QC record for one device and analysis."""
    last_passed: datetime | None   # time of the last passed QC run
    last_failed: bool = False      # the most recent QC run failed


@dataclass(frozen=True, slots=True)
class PreviousResult:
    """A previous result of the same analysis for the same patient."""
    time: datetime
    value: float
    unit: str


# (device_id, analysis_code) -> QcState, or None when no QC is recorded.
QcLookup = Callable[[str, str], Union[QcState, None]]
# (operator_id, analysis_code, at) -> certified?  Or {operator_id: analysis codes | {"*"}}.
OperatorLookup = Union[Callable[[str, str, datetime], bool], Mapping[str, Collection[str]]]
# (patient_key, analysis_code) -> previous results, newest first (for delta checks).
# patient_key: history.patient_key(person identifier value), a hash, never the number.
PreviousLookup = Callable[[str, str], list[PreviousResult]]
# (patient_key, analysis_code) -> times of earlier orders, newest first.
OrderLookup = Callable[[str, str], list[datetime]]


@dataclass(slots=True)
class RuleContext:
    """Everything the rules need apart from the bundle.

    Build one per message (or reuse one sequentially): it caches the index of
    the bundle being validated.
    """
    now: datetime                                  # timezone-aware
    tables: Tables
    settings: Mapping[str, str] = field(default_factory=dict)  # {code: reject|warn|off}
    clock_skew: timedelta = timedelta(minutes=5)
    allow_synthetic_ids: bool = False              # accept Tenor test numbers (month + 80)
    previous_results: PreviousLookup | None = None
    qc_state: QcLookup | None = None
    operator_certified: OperatorLookup | None = None
    recent_orders: OrderLookup | None = None
    duplicate_order_window: timedelta = timedelta(hours=24)
    _view: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("RuleContext.now must be timezone-aware")

    def is_certified(self, operator_id: str, analysis: str, at: datetime) -> bool:
        lookup = self.operator_certified
        if callable(lookup):
            return bool(lookup(operator_id, analysis, at))
        allowed = lookup.get(operator_id) if lookup is not None else None
        return bool(allowed) and (analysis in allowed or "*" in allowed)
