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
POLICY: dict[str, frozenset[str]] = {
    "results.pull": frozenset({"ehr", "lis"}),
    "orders.create": frozenset({"ehr"}),
    "orders.read": frozenset({"ehr", "lis"}),
    "specimens.pull": frozenset({"lis"}),
    "results.create": frozenset({"lis", "instrument"}),
    "admin.read": frozenset({"admin"}),
    "admin.write": frozenset({"admin"}),
    "audit.read": frozenset({"auditor"}),
}


class Forbidden(web.HTTPForbidden):
    """Raised by require(); rendered by the error middleware in the caller's format."""


def principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def require(request: web.Request, action: str) -> Principal:
    """The caller, if the policy lets them perform ``action``; else 403."""
    who = principal(request)
    if who is None or not who.roles.intersection(POLICY[action]):
        raise Forbidden(reason=f"not allowed: {action}")
    return who
