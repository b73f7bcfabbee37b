"""QC results: normalising the mappings' QC events, judging them against
control-lot targets, and the per-instrument, per-analysis QC state.

The mappings hand over QC events as dicts (ASTM and POCT1-A spell their
keys differently); :func:`normalise` turns both into :class:`QcRun`.
:class:`Targets` decides pass/fail from the gateway's own control-lot table
(mappings/codemaps/control_targets.csv plus ``[[qc_targets]]``), never from
the range the analyser prints.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from mappings.codemaps import ControlTarget

from ..validation.bundle_view import parse_datetime
from ..validation.context import QcState


@dataclass(frozen=True, slots=True)
class QcRun:
    """One QC result, protocol-neutral."""
    instrument: str | None
    analysis: str | None          # NLK code (None: not in the code map)
    value: float | None
    value_text: str | None
    unit: str | None
    material: str | None
    lot: str | None
    level: str | None
    operator: str | None
    performed_at: datetime


def normalise(event: dict, *, serial: str | None, received: datetime) -> QcRun:
    """A mapping's QC event (ASTM or POCT1-A keys) as a :class:`QcRun`."""
    when = parse_datetime(event.get("time")) or received
    value = event.get("value")
    return QcRun(
        instrument=event.get("instrument_serial") or event.get("device_serial") or serial,
        analysis=event.get("analysis_code") if "nlk" not in event else event.get("nlk"),
        value=float(value) if isinstance(value, (int, float)) else None,
        value_text=event.get("value_text"),
        unit=event.get("unit"),
        material=event.get("material") or event.get("control_name"),
        lot=event.get("lot") or event.get("control_lot"),
        level=event.get("control_level") or event.get("level"),
        operator=event.get("operator"),
        performed_at=when.astimezone(timezone.utc))


class Targets:
    """Control-lot targets: lot match first, then material name."""

    def __init__(self, targets: list[ControlTarget]):
        self._by_lot: dict[tuple[str, str], ControlTarget] = {}
        self._by_material: dict[tuple[str, str], ControlTarget] = {}
        for t in targets:               # later entries (configuration) win
            if t.lot:
                self._by_lot[(t.analysis, t.lot.casefold())] = t
            if t.material:
                self._by_material[(t.analysis, t.material.casefold())] = t

    def find(self, run: QcRun) -> ControlTarget | None:
        if run.analysis is None:
            return None
        if run.lot:
            hit = self._by_lot.get((run.analysis, run.lot.casefold()))
            if hit:
                return hit
        if run.material:
            return self._by_material.get((run.analysis, run.material.casefold().strip()))
        return None

    def judge(self, run: QcRun) -> tuple[bool | None, ControlTarget | None]:
        """(passed, target); passed is None when no target or no numeric value."""
        target = self.find(run)
        if target is None or run.value is None:
            return None, target
        return target.low <= run.value <= target.high, target


@dataclass(slots=True)
class Judged:
    """The gateway's running QC record for one instrument and analysis."""
    last_passed: datetime | None = None
    last_run: datetime | None = None
    last_failed: bool = False

    def add(self, passed: bool, at: datetime) -> None:
        if self.last_run is None or at >= self.last_run:
            self.last_run = at
            self.last_failed = not passed
        if passed and (self.last_passed is None or at > self.last_passed):
            self.last_passed = at

    def state(self) -> QcState:
        return QcState(last_passed=self.last_passed, last_failed=self.last_failed)
