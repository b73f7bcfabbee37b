"""The administrator's console: /console pages and the /api/admin JSON API.

``setup(app, gw)`` (called by gateway.app for every module in ROUTE_MODULES)
adds the routes, the console middleware (security headers, CSRF), and the
background jobs (retention pruning, alerts) that run while the HTTP app runs.
The pages are static files shipped in this package (no CDN, no inline
script), so they render without external network and under a strict CSP.
See docs/console.md.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from .api import AdminApi
from .jobs import alerts_loop, retention_loop
from .security import console_headers, csrf_guard

STATIC = Path(__file__).parent / "static"
EVENT_INTERVAL_S = 2.0


def setup(app: web.Application, gw) -> None:
    api = AdminApi(gw)
    if not hasattr(gw, "console_event_interval"):
        gw.console_event_interval = EVENT_INTERVAL_S
    app.middlewares.insert(0, console_headers)   # outermost: headers on errors too
    app.middlewares.append(csrf_guard)            # innermost: runs after authentication

    async def page(_request):
        return web.FileResponse(STATIC / "index.html")

    app.add_routes([
        web.get("/console", page),
        web.get("/console/", page),
        web.static("/console/static", STATIC, append_version=False),
        web.post("/console/login", api.login),
        web.post("/console/logout", api.logout),
        web.get("/api/admin/session", api.session),
        web.get("/api/admin/overview", api.overview),
        web.get("/api/admin/events", api.events),
        web.get("/api/admin/messages", api.messages),
        web.post("/api/admin/messages/replay", api.bulk_replay),
        web.get("/api/admin/messages/{id}", api.message),
        web.post("/api/admin/messages/{id}/replay", api.replay),
        web.post("/api/admin/messages/{id}/retry", api.retry),
        web.post("/api/admin/messages/{id}/discard", api.discard),
        web.post("/api/admin/tables/reload", api.reload_tables),
        web.get("/api/admin/instruments", api.instruments),
        web.get("/api/admin/critical", api.critical),
        web.post("/api/admin/critical/{id}/ack", api.critical_ack),
    ])
    app.on_startup.append(lambda _app: _start_jobs(gw))
    app.on_shutdown.append(lambda _app: api.close_streams())
    app.on_cleanup.append(lambda _app: _stop_jobs(gw))


async def _start_jobs(gw) -> None:
    gw.console_jobs = [asyncio.create_task(alerts_loop(gw), name="console-alerts"),
                       asyncio.create_task(retention_loop(gw), name="console-retention")]


async def _stop_jobs(gw) -> None:
    for t in getattr(gw, "console_jobs", []):
        t.cancel()
    await asyncio.gather(*getattr(gw, "console_jobs", []), return_exceptions=True)
