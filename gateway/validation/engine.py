"""Run every registered rule over a bundle and collect the verdict."""
from __future__ import annotations

from mappings.issue import Issue

from .bundle_view import BundleView
from .context import RuleContext
from .registry import run_plan


def validate(bundle: dict, ctx: RuleContext, *, keep_view: bool = False) -> list[Issue]:
    """All issues the rules find in ``bundle``, in rule order.

    Applies the per-source settings: ``reject`` makes a rule's issues errors,
    ``warn`` warnings, ``off`` skips the rule. Rules needing a lookup that
    ``ctx`` lacks are skipped. Some rules change the bundle in place (unit
    conversion, critical-value flags); see docs/rules.md. ``keep_view``
    leaves the bundle index on ``ctx`` for :func:`accepted_facts`.
    """
    ctx._view = BundleView(bundle, ctx.tables)
    issues: list[Issue] = []
    try:
        for r, severity in run_plan(ctx.settings, ctx):
            for issue in r.func(bundle, ctx):
                if severity is not None and issue.severity != severity:
                    issue = Issue(severity, issue.code, issue.location,
                                  issue.text, issue.text_nb)
                issues.append(issue)
    finally:
        if not keep_view:
            ctx._view = None
    return issues
