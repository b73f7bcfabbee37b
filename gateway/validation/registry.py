"""The rule interface: a registered rule has a stable code, a default
severity, bilingual message templates and the function that checks a bundle.

A rule function takes ``(bundle, ctx)`` and yields :class:`Issue` objects,
normally built with ``RULE.issue(location, **params)`` so that code, default
severity and both texts come from the registration. The engine then applies
the per-source setting (reject/warn/off) to the severity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from mappings.issue import SEVERITIES, Issue

ACTIONS = {"reject": "error", "warn": "warning", "off": None}

RuleFunc = Callable[[dict, "object"], Iterable[Issue]]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: str            # default severity: error | warning | information
    text: str                # English template, str.format fields
    text_nb: str             # Norwegian bokmål template, same fields
    func: RuleFunc
    needs: tuple[str, ...] = ()   # RuleContext lookups; rule skipped when any is None
    summary: str = ""        # what the rule checks (docs, console)

    def __call__(self, bundle: dict, ctx) -> Iterable[Issue]:
        return self.func(bundle, ctx)

    def issue(self, location: str, **params) -> Issue:
        """An issue of this rule at ``location`` with the templates filled in."""
        if params:
            return Issue(self.severity, self.code, location,
                         self.text.format(**params), self.text_nb.format(**params))
        return Issue(self.severity, self.code, location, self.text, self.text_nb)


# Registration order is run order: rules that change the bundle (unit
# conversion) are registered before the rules that read what they changed.
RULES: dict[str, Rule] = {}

# RuleContext lookups some rule needs, in order of first registration.
_NEEDED_LOOKUPS: list[str] = []

# run_plan() results by (settings, lookups the context lacks); every message
# from the same source asks the same question. Cleared when a rule registers.
_PLANS: dict[tuple, list[tuple[Rule, str | None]]] = {}
_MAX_PLANS = 256


def rule(code: str, severity: str, *, en: str, nb: str,
         needs: tuple[str, ...] = ()) -> Callable[[RuleFunc], Rule]:
    """Decorator: register ``func`` as the rule ``code``."""
    if severity not in SEVERITIES:
        raise ValueError(f"rule {code}: unknown severity {severity!r}")

    def register(func: RuleFunc) -> Rule:
        if code in RULES:
            raise ValueError(f"rule code {code} registered twice")
        doc = (func.__doc__ or "").strip().split("\n\n")[0]
        r = Rule(code, severity, en, nb, func, needs, " ".join(doc.split()))
        RULES[code] = r
        _NEEDED_LOOKUPS.extend(n for n in needs if n not in _NEEDED_LOOKUPS)
        _PLANS.clear()
        return r
    return register


def run_plan(settings, ctx) -> list[tuple[Rule, str | None]]:
    """The rules to run for ``settings`` and ``ctx``, in run order, each with the
    severity its setting imposes (None: the rule's own).

    ``off`` rules are left out, and so are rules needing a lookup ``ctx`` lacks.
    """
    missing = tuple(n for n in _NEEDED_LOOKUPS if getattr(ctx, n) is None)
    key = (tuple(settings.items()) if settings else (), missing)
    plan = _PLANS.get(key)
    if plan is None:
        plan = []
        for code, r in RULES.items():
            action = settings.get(code) if settings else None
            if action == "off" or any(n in missing for n in r.needs):
                continue
            plan.append((r, ACTIONS.get(action) if action else None))
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def check_settings(settings: dict) -> list[str]:
    """Problems in a per-source ``{rule_code: action}`` map, for config checks."""
    problems = []
    for code, action in settings.items():
        if code not in RULES:
            problems.append(f"unknown rule code {code!r}; known: {', '.join(RULES)}")
        elif action not in ACTIONS:
            problems.append(f"rule {code}: action {action!r} is not one of reject, warn, off")
    return problems
