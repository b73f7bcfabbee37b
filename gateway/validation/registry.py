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
        return r
    return register


def check_settings(settings: dict) -> list[str]:
    """Problems in a per-source ``{rule_code: action}`` map, for config checks."""
    problems = []
    for code, action in settings.items():
        if code not in RULES:
            problems.append(f"unknown rule code {code!r}; known: {', '.join(RULES)}")
        elif action not in ACTIONS:
            problems.append(f"rule {code}: action {action!r} is not one of reject, warn, off")
    return problems
