"""Security headers on every HTTP response (set unless a handler set its own).

API responses carry patient data: never cached, never framed, never sniffed.
HTML (the console) gets a CSP without inline scripts; the console may send a
stricter one of its own, which is kept.
"""
from __future__ import annotations

from aiohttp import web

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
HTML_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: also covers error responses and static files."""
    h = response.headers
    for name, value in COMMON.items():
        h.setdefault(name, value)
    html = (response.content_type or "").startswith("text/html")
    h.setdefault("Content-Security-Policy", HTML_CSP if html else API_CSP)
    if not request.path.startswith(("/static/", "/healthz", "/readyz")):
        h.setdefault("Cache-Control", "no-store")
    if request.secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")


def install(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
