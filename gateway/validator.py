"""Builds the pipeline's validator from configuration and the rule tables.

Tables are loaded and checked once at start-up (a bad table stops start-up
with file, line and reason); each message gets a fresh RuleContext with the
sending system's rule settings and the gateway's lookups.

History for DELTA-CHECK and ORDER-DUPLICATE: validate() is synchronous and
on the hot path, so it reads two in-memory :class:`History` maps, never the
database. They are filled (1) at start-up by :meth:`Validator.prefetch` from
the ``validation_result`` / ``validation_order`` tables, and (2) as messages
are stored. :meth:`Validator.check` judges a bundle and works out the rows
an accepted message adds to the history (:class:`~gateway.store.HistoryRows`)
without remembering anything; the pipelines store those rows with the
message (same transaction: committed means indexed, across restarts and
processes) and call :meth:`Validator.remember` only after the commit, so a
message that is judged but not stored (a replay preview, a refused FHIR
order, a failed commit) never becomes somebody's "previous result".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mappings.issue import Issue, rejects
from mappings.tables_loader import TableError, Tables, load_tables

from . import logging as log_setup
from .config import Config, ConfigError
from .store import HistoryRows
from .validation import History, PreviousResult, RuleContext, accepted_facts, validate

log = log_setup.get("labgate.validator")

# Most history rows read at start-up (newest first).
_ROWS_LIMIT = 500_000


def load_rule_tables(config: Config) -> Tables:
    try:
        return load_tables(config.validation.tables_dir)
    except TableError as e:
        raise ConfigError(f"rule table {e}") from None


def _settings_default(config: Config) -> dict[str, str]:
    """Settings every source starts from: the operator-authorisation mode."""
    if config.validation.operator_authorisation == "flag":
        return {"OPERATOR-NOT-CERTIFIED": "warn"}
    return {}


def _settings(config: Config) -> dict[str, dict[str, str]]:
    """Per-system rule settings over the defaults (a system's own setting wins)."""
    default = _settings_default(config)
    return {s.name: {**default, **s.rules} for s in config.systems}


@dataclass(slots=True)
class Checked:
    """A validator's judgement of one bundle."""
    issues: list[Issue]
    history: HistoryRows | None = None   # what storing it adds to the history (accepted only)


class Validator:
    """Judges bundles (:meth:`check`) and keeps the history of stored ones
    (:meth:`remember`) for every intake path.

    ``qc_state`` and ``operator_certified`` are lookups set by the instrument
    side (see gateway.validation.context); None skips their rules.
    """

    def __init__(self, config: Config, tables: Tables, *, qc_state=None, operator_certified=None):
        v = config.validation
        self._tables = tables
        self._settings = _settings(config)
        self._default_settings = _settings_default(config)
        self._skew = timedelta(minutes=v.clock_skew_minutes)
        self._synthetic = v.allow_synthetic_ids
        self._dup_window = timedelta(hours=v.duplicate_order_window_hours)
        self.qc_state = qc_state
        self.operator_certified = operator_certified
        self.results: History = History(lambda p: p.time, max_keys=v.history_max_keys)
        self.orders: History = History(lambda t: t, max_keys=v.history_max_keys)

    def check(self, bundle: dict, source: str, *, qc_state=None,
              operator_certified=None) -> Checked:
        """Validate one bundle from ``source``; nothing is remembered.
        ``qc_state``/``operator_certified`` are the instrument path's lookups
        for this call (results from registered instruments); without them the
        validator's own (if any) apply."""
        ctx = RuleContext(now=datetime.now(timezone.utc), tables=self._tables,
                          settings=self._settings.get(source, self._default_settings),
                          clock_skew=self._skew,
                          allow_synthetic_ids=self._synthetic,
                          qc_state=qc_state or self.qc_state,
                          operator_certified=operator_certified or self.operator_certified,
                          previous_results=self.results.get, recent_orders=self.orders.get,
                          duplicate_order_window=self._dup_window)
        issues = validate(bundle, ctx, keep_view=True)
        if rejects(issues):
            return Checked(issues)
        try:
            return Checked(issues, _history_rows(bundle, ctx))
        except Exception as e:   # history is an aid; never let it fail a message
            log.warning("validation.history_not_computed", error=type(e).__name__)
            return Checked(issues)

    def remember(self, history: HistoryRows | None) -> None:
        """Add a stored message's rows to the in-memory history (results only
        for analyses with delta limits: the only ones DELTA-CHECK reads)."""
        if history is None:
            return
        delta = self._tables.delta
        for code, at, value, unit in history.results:
            if code in delta:
                self.results.add(history.patient_key, code, PreviousResult(at, value, unit))
        for code, at in history.orders:
            self.orders.add(history.patient_key, code, at)

    async def prefetch(self, pool) -> int:
        """Load the history still inside the configured windows; returns rows read.
        Safe to repeat (a row already known is not added twice)."""
        t = self._tables
        codes = self._delta_codes()
        days = max(t.max_delta_window_minutes / 1440, 0)
        rows = 0
        async with pool.acquire() as conn:
            if codes:
                got = await conn.fetch(
                    "SELECT patient_key, code, observed_at, value, unit FROM validation_result"
                    " WHERE code = ANY($1::text[]) AND observed_at > now() - $2 * interval '1 day'"
                    " ORDER BY observed_at DESC LIMIT $3", list(codes), days, _ROWS_LIMIT)
                self.learn_results(got)
                rows += len(got)
            got = await conn.fetch(
                "SELECT patient_key, code, ordered_at FROM validation_order"
                " WHERE ordered_at > now() - $1::interval ORDER BY ordered_at DESC LIMIT $2",
                self._dup_window, _ROWS_LIMIT)
            self.learn_orders(got)
            rows += len(got)
        return rows

    def learn_results(self, rows) -> None:
        """Add stored ``validation_result`` rows (patient key, code, observed at,
        value, unit), e.g. another gateway's: only analyses with delta limits.
        The code may be an analysis code or a LOINC code, as the table holds it."""
        codes = self._delta_codes()
        add = self.results.add
        for patient, code, at, value, unit in rows:
            analysis = codes.get(code)
            if analysis is not None:
                add(patient, analysis, PreviousResult(at, value, unit))

    def learn_orders(self, rows) -> None:
        """Add stored ``validation_order`` rows (patient key, code, ordered at)."""
        t = self._tables
        for patient, code, at in rows:
            a = t.analyses.get(code) or t.by_loinc.get(code)
            if a is not None:
                self.orders.add(patient, a.code, at)

    def _delta_codes(self) -> dict[str, str]:
        """Stored result code → analysis code, for the analyses DELTA-CHECK reads."""
        t = self._tables
        codes = {lc: a.code for lc, a in t.by_loinc.items() if a.code in t.delta}
        codes.update({c: c for c in t.delta})
        return codes

    def reload(self, tables: Tables) -> None:
        """Swap in re-read tables (e.g. after a bioengineer changed a limit)."""
        self._tables = tables


def _history_rows(bundle: dict, ctx: RuleContext) -> HistoryRows | None:
    """Every analysed numeric result and order of a validated bundle, in the
    canonical unit (the rules' conversion has been applied); None without a
    patient."""
    facts = accepted_facts(bundle, ctx)
    if facts.patient is None:
        return None
    return HistoryRows(facts.patient,
                       [(code, p.time, p.value, p.unit) for code, p in facts.results],
                       list(facts.orders))
