"""The instrument registry: configuration -> database at start-up, and the
in-process caches the synchronous validation lookups read.

Tables (migration 0003): ``instrument``, ``instrument_operator``,
``qc_result``. Configuration is the source of truth for instruments and
operators: :meth:`Registry.sync` upserts what ``[[instruments]]`` and
``[[operators]]`` declare and disables instruments (and deletes operators)
no longer declared, so QC history stays attached to its serial number.

The QC state cache holds, per (serial, analysis), the last judged run and
the last passed run; it is loaded at start-up and updated after each QC
commit, so :meth:`qc_state` never touches the database.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import asyncpg
import orjson

from mappings.codemaps import CodeMapError, ControlTarget, load_code_map, load_control_targets

from ..config import Config, ConfigError
from ..validation.context import QcState
from .qc import Judged, QcRun, Targets


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    serial: str
    model: str
    site: str
    protocol: str
    system: str
    code_map: str
    analyses: frozenset[str]
    qc_interval_minutes: dict
    enabled: bool


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    operator_id: str
    name: str
    hpr: str | None
    analyses: frozenset[str]
    sites: frozenset[str]
    permission_level: str
    expires: date | None

    def certified(self, analysis: str, at: datetime, site: str | None = None) -> bool:
        if analysis not in self.analyses and "*" not in self.analyses:
            return False
        if site is not None and self.sites and site not in self.sites:
            return False
        return self.expires is None or at.astimezone(timezone.utc).date() <= self.expires


class Registry:
    """Instruments, operators, code maps, control targets and QC state."""

    def __init__(self, config: Config, qc_intervals: dict[str, int]):
        self._config = config
        self._table_intervals = qc_intervals
        settings = config.instrument_settings
        self.codemaps_dir = settings.codemaps_dir
        try:
            targets = load_control_targets(self.codemaps_dir)
            self.code_maps = {i.code_map: load_code_map(i.code_map, self.codemaps_dir)
                              for i in config.instruments}
        except CodeMapError as e:
            raise ConfigError(f"instruments: {e}") from None
        targets += [ControlTarget(t.analysis, t.lot, t.material, t.level, t.low, t.high, t.unit)
                    for t in config.qc_targets]
        self.targets = Targets(targets)
        self.instruments: dict[str, InstrumentInfo] = {}
        self.operators: dict[str, OperatorInfo] = {}
        self._qc: dict[tuple[str, str], Judged] = {}

    # -- start-up -----------------------------------------------------------
    async def sync(self, conn: asyncpg.Connection) -> None:
        """Write the configured instruments and operators to the database."""
        async with conn.transaction():
            serials = []
            for i in self._config.instruments:
                serials.append(i.serial)
                await conn.execute(
                    "INSERT INTO instrument (serial, model, site, protocol, system, code_map, analyses,"
                    " qc_interval_minutes, enabled) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9)"
                    " ON CONFLICT (serial) DO UPDATE SET model = $2, site = $3, protocol = $4,"
                    " system = $5, code_map = $6, analyses = $7, qc_interval_minutes = $8::jsonb,"
                    " enabled = $9, updated_at = now()",
                    i.serial, i.model, i.site, i.protocol, i.system, i.code_map, list(i.analyses),
                    orjson.dumps(i.qc_interval_minutes).decode(), i.enabled)
            await conn.execute("UPDATE instrument SET enabled = false, updated_at = now()"
                               " WHERE NOT (serial = ANY($1::text[])) AND enabled", serials)
            ids = []
            for o in self._config.operators:
                ids.append(o.id)
                await conn.execute(
                    "INSERT INTO instrument_operator (operator_id, name, hpr, analyses, sites,"
                    " permission_level, expires) VALUES ($1,$2,$3,$4,$5,$6,$7)"
                    " ON CONFLICT (operator_id) DO UPDATE SET name = $2, hpr = $3, analyses = $4,"
                    " sites = $5, permission_level = $6, expires = $7, updated_at = now()",
                    o.id, o.name, o.hpr, list(o.analyses), list(o.sites), o.permission_level,
                    o.expires)
            await conn.execute("DELETE FROM instrument_operator WHERE NOT (operator_id = ANY($1::text[]))",
                               ids)

    async def load(self, conn: asyncpg.Connection) -> None:
        """Fill the caches from the database (after :meth:`sync`)."""
        self.instruments = {r["serial"]: InstrumentInfo(
            r["serial"], r["model"], r["site"], r["protocol"], r["system"], r["code_map"],
            frozenset(r["analyses"]), orjson.loads(r["qc_interval_minutes"]), r["enabled"])
            for r in await conn.fetch("SELECT * FROM instrument")}
        self.operators = {r["operator_id"]: OperatorInfo(
            r["operator_id"], r["name"], r["hpr"], frozenset(r["analyses"]), frozenset(r["sites"]),
            r["permission_level"], r["expires"])
            for r in await conn.fetch("SELECT * FROM instrument_operator")}
        self._qc = {}
        await self.reload_qc(conn)

    async def reload_qc(self, conn: asyncpg.Connection) -> None:
        """Read every judged QC run into the QC state (safe to repeat: a run
        already known changes nothing)."""
        self.learn_qc(await conn.fetch(
            "SELECT instrument, analysis, passed, performed_at FROM qc_result"
            " WHERE passed IS NOT NULL AND analysis IS NOT NULL ORDER BY performed_at, id"))

    def learn_qc(self, runs) -> None:
        """Add committed QC runs (instrument, analysis, passed, performed at),
        e.g. another gateway's (gateway/history_feed.py)."""
        for serial, analysis, passed, at in runs:
            if passed is not None and serial and analysis:
                self._judged(serial, analysis).add(passed, at)

    # -- lookups (synchronous, for validation) ------------------------------
    def qc_state(self, serial: str, analysis: str) -> QcState | None:
        """The QC-LOCKOUT rule's lookup.

        An instrument's own ``qc_interval_minutes`` for the analysis is
        applied by reporting ``last_passed`` shifted by the difference to the
        rule table's interval, so the rule's "older than the table interval"
        test is exactly "older than the instrument's interval".
        """
        judged = self._qc.get((serial, analysis))
        if judged is None:
            return None
        state = judged.state()
        own = self._own_interval(serial, analysis)
        table = self._table_intervals.get(analysis)
        if state.last_passed is not None and own is not None and table is not None:
            shifted = state.last_passed - timedelta(minutes=table - own)
            return QcState(last_passed=shifted, last_failed=state.last_failed)
        return state

    def operator_certified(self, operator_id: str, analysis: str, at: datetime) -> bool:
        """The OPERATOR-NOT-CERTIFIED rule's lookup: known, certified for the
        analysis and not expired at ``at``."""
        op = self.operators.get(operator_id)
        return op is not None and op.certified(analysis, at)

    # -- state ----------------------------------------------------------------
    def _judged(self, serial: str, analysis: str) -> Judged:
        return self._qc.setdefault((serial, analysis), Judged())

    def _own_interval(self, serial: str, analysis: str) -> int | None:
        inst = self.instruments.get(serial)
        return inst.qc_interval_minutes.get(analysis) if inst else None

    def interval(self, serial: str, analysis: str) -> int | None:
        """QC interval in minutes: the instrument's own, else qc_intervals.csv."""
        own = self._own_interval(serial, analysis)
        return own if own is not None else self._table_intervals.get(analysis)

    def note_qc(self, run: QcRun, passed: bool | None) -> None:
        """Update the cache after a QC result is committed."""
        if passed is not None and run.instrument and run.analysis:
            self._judged(run.instrument, run.analysis).add(passed, run.performed_at)

    def qc_summary(self, serial: str, analysis: str, now: datetime | None = None) -> dict:
        """{state: ok|locked|overdue|missing, last_qc, last_passed} for one analysis."""
        judged = self._qc.get((serial, analysis))
        now = now or datetime.now(timezone.utc)
        if judged is None or judged.last_run is None:
            return {"state": "missing", "last_qc": None, "last_passed": None}
        out = {"last_qc": judged.last_run, "last_passed": judged.last_passed}
        interval = self.interval(serial, analysis)
        if judged.last_failed or judged.last_passed is None:
            out["state"] = "locked"
        elif interval is not None and now - judged.last_passed > timedelta(minutes=interval):
            out["state"] = "overdue"
        else:
            out["state"] = "ok"
        return out

    def locked_analyses(self, serial: str) -> list[str]:
        """Analyses whose last QC failed on this instrument."""
        return sorted(a for (s, a), j in self._qc.items() if s == serial and j.last_failed)

    def certified_operators(self, inst: InstrumentInfo, at: datetime | None = None) -> list[OperatorInfo]:
        """Operators certified (now) for at least one of the instrument's analyses at its site."""
        at = at or datetime.now(timezone.utc)
        return sorted((op for op in self.operators.values()
                       if any(op.certified(a, at, inst.site) for a in inst.analyses)),
                      key=lambda o: o.operator_id)
