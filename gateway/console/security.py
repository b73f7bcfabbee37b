"""Console response headers and CSRF enforcement (two aiohttp middlewares).

Every /console and /api/admin response gets a strict Content-Security-Policy
(scripts and styles only from the gateway itself, nothing inline), framing
refused, no referrer, no MIME sniffing, and ``Cache-Control: no-store``
(the console shows patient data; nothing of it may stay in a cache).
Any state-changing request authenticated by a session cookie must carry the
session's CSRF token, wherever it is sent.
``client_address`` is the address the login throttle counts against.
"""
from __future__ import annotations

import ipaddress

from aiohttp import web

from .. import users
from .. import logging as log_setup
from ..authz import PRINCIPAL

log = log_setup.get("labgate.console")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_console(path: str) -> bool:
    return path == "/console" or path.startswith(("/console/", "/api/admin"))


@web.middleware
async def console_headers(request: web.Request, handler):
    """Outermost: the security headers on every console response, errors included."""
    if not is_console(request.path):
        return await handler(request)
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        resp = web.Response(status=e.status, reason=e.reason, text=e.text,
                            content_type=e.content_type or "text/plain")
    resp.headers.update(HEADERS)
    return resp


@web.middleware
async def csrf_guard(request: web.Request, handler):
    """Innermost (after authentication): a cookie session must prove its CSRF token."""
    who = request.get(PRINCIPAL)
    if (request.method not in SAFE_METHODS and who is not None and who.kind == "user"
            and not users.csrf_ok(request)):
        log.info("console.csrf_refused", path=request.path, user=who.name)
        return web.json_response({"error": "csrf", "detail": "missing or wrong X-CSRF-Token"},
                                 status=403)
    return await handler(request)


def client_address(request: web.Request) -> str:
    """The client address the login throttle counts against.

    The TCP peer address, never a header: the gateway has no notion of a
    trusted proxy, and X-Forwarded-For from anyone else is whatever the
    attacker wants it to be (a fresh address for every guess). IPv4 (also
    IPv4-mapped IPv6) counts per address; IPv6 per /64 prefix, since one
    host or customer routinely holds a whole /64. Behind a reverse proxy every
    client shares the proxy's address (docs/console.md).
    """
    peer = request.remote or ""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer[:64] or "unknown"      # e.g. a Unix socket: one shared bucket
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
