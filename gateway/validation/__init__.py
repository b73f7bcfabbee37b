"""Clinical validation of canonical FHIR bundles: pure, synchronous, fast.

    from gateway.validation import RuleContext, validate
    from mappings.tables_loader import default_tables
    issues = validate(bundle, RuleContext(now=now, tables=default_tables()))

Rule codes, defaults and sources: docs/rules.md. Importing this package
registers the rules; registration order is run order.
"""
from .registry import ACTIONS, RULES, Rule, check_settings, rule
from .context import OperatorLookup, PreviousResult, QcLookup, QcState, RuleContext
from . import rules_patient, rules_practitioner, rules_analysis, rules_time, rules_poc  # noqa: F401  (registers)
from .engine import validate
from .fhir_ext import (ANALYSIS_TIME_EXT, CRITICAL_HIGH, CRITICAL_LOW, NOTIFY_TAG_SYSTEM,
                       PHONE_NOTIFY_TAG, STORAGE_TEMPERATURE_EXT)

__all__ = [
    "ACTIONS", "RULES", "Rule", "check_settings", "rule",
    "OperatorLookup", "PreviousResult", "QcLookup", "QcState", "RuleContext",
    "validate",
    "ANALYSIS_TIME_EXT", "CRITICAL_HIGH", "CRITICAL_LOW", "NOTIFY_TAG_SYSTEM",
    "PHONE_NOTIFY_TAG", "STORAGE_TEMPERATURE_EXT",
]
