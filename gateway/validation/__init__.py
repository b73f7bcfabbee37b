"""Clinical validation of canonical FHIR bundles: pure, synchronous, fast.

    from gateway.validation import RuleContext, validate
    from mappings.tables_loader import default_tables
    issues = validate(bundle, RuleContext(now=now, tables=default_tables()))

Rule codes, defaults and sources: docs/rules.md. Importing this package
registers the rules; registration order is run order.
"""
from .registry import ACTIONS, RULES, Rule, check_settings, rule
from .context import OperatorLookup, OrderLookup, PreviousResult, QcLookup, QcState, RuleContext
from . import (rules_patient, rules_practitioner, rules_analysis, rules_time,  # noqa: F401
               rules_specimen_quality, rules_poc, rules_orders, rules_history)  # (registers)
from .engine import validate
from .facts import AcceptedFacts, accepted_facts
from .fhir_ext import (ANALYSIS_TIME_EXT, CRITICAL_HIGH, CRITICAL_LOW, HAEMOLYSIS_INDEX_EXT,
                       NOTIFY_TAG_SYSTEM, PHONE_NOTIFY_TAG, STORAGE_TEMPERATURE_EXT)
from .history import History, patient_key

__all__ = [
    "ACTIONS", "RULES", "Rule", "check_settings", "rule",
    "OperatorLookup", "OrderLookup", "PreviousResult", "QcLookup", "QcState", "RuleContext",
    "validate", "AcceptedFacts", "accepted_facts", "History", "patient_key",
    "ANALYSIS_TIME_EXT", "CRITICAL_HIGH", "CRITICAL_LOW", "HAEMOLYSIS_INDEX_EXT",
    "NOTIFY_TAG_SYSTEM", "PHONE_NOTIFY_TAG", "STORAGE_TEMPERATURE_EXT",
]
