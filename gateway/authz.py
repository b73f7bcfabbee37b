"""Who is calling, and what they may do: checked in one place.

Every HTTP request gets a :class:`Principal` from the authentication
middleware (a system by bearer token, or a console user by session). Handlers
ask :func:`require` for the roles an action needs; the policy table below is
the single list of which role may do what.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str                 # "system" | "user"
    name: str                 # system name or user name
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


PRINCIPAL = web.RequestKey("principal", Principal)

# action -> roles allowed. Resource-level checks (an EHR sees only its own
# orders, a LIS only what is referred to it) are made by the handler with the
# principal's name, after this coarse check.
# Roles (issue 8): ehr sends orders and reads its own orders and results;
# instrument sends results and QC for its registered instruments; lis pulls
# and claims what is referred to it and sends results; admin runs the console,
# replay and configuration; auditor reads the audit log. No role implies
# another: an admin is not an auditor and reads no patient data by role.
POLICY: dict[str, frozenset[str]] = {
    "results.pull": frozenset({"ehr", "lis"}),
    "orders.create": frozenset({"ehr"}),
    "orders.read": frozenset({"ehr", "lis"}),
    "orders.claim": frozenset({"lis"}),
    "specimens.pull": frozenset({"lis"}),
    "results.create": frozenset({"lis", "instrument"}),
    "qc.create": frozenset({"instrument"}),
    "admin.read": frozenset({"admin"}),
    "admin.write": frozenset({"admin"}),
    "messages.replay": frozenset({"admin"}),
    "audit.read": frozenset({"auditor"}),
}


class Forbidden(web.HTTPForbidden):
    """Raised by require(); rendered (and audited as ``denied``) by the error
    middleware in the caller's format. ``action`` is the refused action."""

    def __init__(self, *, reason: str | None = None, action: str | None = None, **kw):
        super().__init__(reason=reason, **kw)
        self.action = action


def principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def require(request: web.Request, action: str) -> Principal:
    """The caller, if the policy lets them perform ``action``; else 403."""
    who = principal(request)
    if action not in POLICY:
        raise KeyError(f"authz.POLICY has no action {action!r}: add it there")
    if who is None or not who.roles.intersection(POLICY[action]):
        raise Forbidden(reason=f"not allowed: {action}", action=action)
    return who
