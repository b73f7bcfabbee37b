"""Builds the pipeline's validator from configuration and the rule tables.

Tables are loaded and checked once at start-up (a bad table stops start-up
with file, line and reason); each message gets a fresh RuleContext with the
sending system's rule settings.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mappings.issue import Issue
from mappings.tables_loader import TableError, Tables, load_tables

from .config import Config, ConfigError
from .validation import RuleContext, validate


def load_rule_tables(config: Config) -> Tables:
    try:
        return load_tables(config.validation.tables_dir)
    except TableError as e:
        raise ConfigError(f"rule table {e}") from None


class Validator:
    """Callable ``(bundle, source) -> issues`` used by the pipelines."""

    def __init__(self, config: Config, tables: Tables, *, qc_state=None, operator_certified=None):
        self._tables = tables
        self._settings = {s.name: dict(s.rules) for s in config.systems}
        self._skew = timedelta(minutes=config.validation.clock_skew_minutes)
        self._synthetic = config.validation.allow_synthetic_ids
        self.qc_state = qc_state
        self.operator_certified = operator_certified

    def __call__(self, bundle: dict, source: str) -> list[Issue]:
        ctx = RuleContext(now=datetime.now(timezone.utc), tables=self._tables,
                          settings=self._settings.get(source, {}), clock_skew=self._skew,
                          allow_synthetic_ids=self._synthetic, qc_state=self.qc_state,
                          operator_certified=self.operator_certified)
        return validate(bundle, ctx)

    def reload(self, tables: Tables) -> None:
        """Swap in re-read tables (e.g. after a bioengineer changed a limit)."""
        self._tables = tables
