"""Assembles one gateway process: database, pipeline, listeners, workers, HTTP.

A process has a role (``labgate serve --role``): ``all`` runs everything;
``intake`` runs the listeners, the pipeline and the full HTTP API but no
delivery loops; ``delivery`` runs only the delivery loops, with the HTTP
routes that need no pipeline (health, readiness, metrics, the pull API).
An intake and a delivery process on one database are one gateway whose
delivery has an event loop of its own (docs/deployment.md says when that
pays off).
"""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
from aiohttp import web

from adapters.mllp import MllpServer, Peer
from mappings.hl7v2.ack import build_ack
from mappings.issue import Issue

from . import logging as log_setup
from . import migrate
from .config import PROCESS_ROLES, Config, Listener
from .delivery import DeliveryService
from .eventloop import running_loop_name
from .embedded_pg import EmbeddedPostgres, home
from .history_feed import HistoryFeed, new_instance_id
from .http_api import HttpApi
from .listen import PgListener
from .metrics import Metrics
from .pipeline import Hl7Pipeline
from .routing import Router
from .peer_access import allow_list
from .store import MessageWriter, create_pool
from .validator import Validator, load_rule_tables

log = log_setup.get("labgate.app")

# Modules that add HTTP routes: each has ``setup(app: web.Application, gw: Gateway)``.
ROUTE_MODULES = [
    "gateway.console",              # /console pages and /api/admin (docs/console.md)
    "gateway.fhir.routes",          # orders, specimens, results (docs/fhir.md)
    "gateway.security.audit_api",   # GET /fhir/AuditEvent for auditors (docs/security.md)
]


def database_url(config: Config) -> str | None:
    return os.environ.get("LABGATE_DATABASE_URL") or config.database.url


class Gateway:
    def __init__(self, config: Config, *, db_url: str | None = None, home_dir: Path | None = None,
                 role: str = "all"):
        if role not in PROCESS_ROLES:
            raise ValueError(f"role must be one of {', '.join(PROCESS_ROLES)}, not {role!r}")
        self.config = config
        self.role = role
        self._db_url = db_url or database_url(config)
        self._home = home_dir or home()
        self._embedded: EmbeddedPostgres | None = None
        self.metrics = Metrics()
        self.pool: asyncpg.Pool | None = None
        self.listeners: dict[str, MllpServer] = {}
        self._writer: MessageWriter | None = None
        self._delivery: DeliveryService | None = None
        self._listen: PgListener | None = None
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None

    @property
    def db_url(self) -> str:
        return self._db_url

    async def start(self) -> None:
        self.validator = Validator(self.config, load_rule_tables(self.config))
        if not self._db_url:
            self._embedded = EmbeddedPostgres(self._home / "pgdata")
            self._db_url = await asyncio.to_thread(self._embedded.start)
            log.info("db.embedded_started", data_dir=str(self._home / "pgdata"))
        db = self.config.database
        instance = new_instance_id()
        self.pool = await create_pool(self._db_url, min_size=db.pool_min, max_size=db.pool_max,
                                      instance=instance)
        async with self.pool.acquire() as conn:
            applied = await migrate.apply(conn)
        if applied:
            log.info("db.migrated", applied=applied)
        # One LISTEN connection: new outbox rows, and the history other gateways store.
        self._listen = PgListener(self._db_url)
        if self.role != "delivery":
            self.history_feed = HistoryFeed(self.validator, self.pool, instance, self._listen)
        if self.role != "intake":
            self._delivery = DeliveryService(self.pool, self.config, self.metrics, self._listen)
        await self._listen.start()
        if self.role != "delivery":
            await self._start_intake()
        if self._delivery:
            await self._delivery.start()
        elif push := [d.name for d in self.config.destinations if d.type != "pull"]:
            # Rows for push destinations wait in the outbox until a delivery
            # process (or a full gateway) runs on this database.
            log.warning("gateway.no_delivery_here", role=self.role, destinations=push)
        await self._start_http()
        log.info("gateway.started", role=self.role, http_port=self.http_port,
                 event_loop=running_loop_name(),
                 listeners={n: s.port for n, s in self.listeners.items()})

    async def _start_intake(self) -> None:
        """History, writer, pipeline, instruments and listeners."""
        db = self.config.database
        # Delta / duplicate-order history into memory before the first message
        # (after LISTEN, so nothing committed meanwhile is missed).
        log.info("validation.history_loaded", rows=await self.validator.prefetch(self.pool))
        self._writer = MessageWriter(self.pool, writers=db.writers, max_batch=db.group_commit_max)
        pipeline = Hl7Pipeline(writer=self._writer, router=Router(self.config), metrics=self.metrics,
                               gateway_name=self.config.gateway.name,
                               facility=self.config.gateway.facility,
                               validator=self.validator,
                               systems={s.name: s for s in self.config.systems})   # ACK modes
        self.pipeline = pipeline   # the console replays stored messages through it
        from .instruments.service import start_instruments   # docs/instruments.md
        self.instruments = await start_instruments(config=self.config, pool=self.pool,
                                                   writer=self._writer, metrics=self.metrics,
                                                   validator=self.validator)
        await self.history_feed.attach_qc(self.instruments.registry)
        for lst in self.config.listeners:
            if lst.protocol != "mllp":   # astm / poct1a
                self.listeners[lst.name] = await self.instruments.start_listener(lst)
                continue
            await self._start_listener(lst, pipeline)

    async def _start_listener(self, lst: Listener, pipeline: Hl7Pipeline) -> None:
        from .mllp_tls import CertificateSystems, listener_context
        allowed = allow_list(lst)
        cert_systems = CertificateSystems(lst.tls)

        def authorize(peer: Peer) -> str | None:
            if not allowed(peer.host):
                return None
            if not cert_systems:
                return lst.system
            system = cert_systems.system_for(peer.tls_subject, peer.cert)   # mTLS: the cert names the system
            if system is None:
                log.warning("listener.certificate_refused", listener=lst.name, peer=peer.host,
                            tls_subject=peer.tls_subject)
            return system

        async def handle(message: bytes, peer: Peer) -> bytes | None:
            # StoreUnavailable propagates: the adapter closes the connection without
            # an ACK, so the sender retries.
            return await pipeline.handle(message, peer.system or lst.system, peer=peer.host)

        def on_oversize(peer: Peer) -> bytes:
            issue = Issue("error", "MLLP-MESSAGE-TOO-LARGE", "MSH",
                          f"The message exceeds this listener's limit of {lst.max_message_bytes} bytes",
                          "Meldingen er større enn grensen for denne mottakeren")
            return build_ack(None, "AR", [issue], control_id="LGOVERSIZE",
                             timestamp=datetime.now(timezone.utc),
                             sending_app=self.config.gateway.name)

        server = MllpServer(handle, name=lst.name, max_message_bytes=lst.max_message_bytes,
                            idle_timeout=lst.idle_timeout_s, max_connections=lst.max_connections,
                            max_connections_per_peer=lst.max_connections_per_peer,
                            authorize=authorize, on_oversize=on_oversize, logger=log,
                            ssl=listener_context(lst.tls, f"listeners.{lst.name}") if lst.tls else None)
        await server.start(lst.host, lst.port)
        self.listeners[lst.name] = server

    async def _start_http(self) -> None:
        import importlib
        api = HttpApi(pool=self.pool, config=self.config, metrics=self.metrics,
                      readiness=self.readiness)
        self.http_api = api
        for name in ROUTE_MODULES if self.role != "delivery" else ():   # they need the pipeline
            importlib.import_module(name).setup(api.app, self)
        self._runner = web.AppRunner(api.app, access_log=None)
        await self._runner.setup()
        ssl_context = None
        if self.config.http.tls:   # TLS 1.2+, client certificates (docs/security.md)
            from .security.tls import server_context
            ssl_context = server_context(self.config.http.tls)
        site = web.TCPSite(self._runner, self.config.http.host, self.config.http.port,
                           ssl_context=ssl_context)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]

    async def readiness(self) -> tuple[bool, dict]:
        detail = {"listeners": {n: s.port for n, s in self.listeners.items()}}
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
            detail["database"] = "ok"
        except Exception as e:  # any failure means not ready
            detail["database"] = type(e).__name__
            return False, detail
        if self.role == "delivery":
            return True, detail
        bound = len(self.listeners) == len(self.config.listeners)
        return bound, detail

    async def stop(self) -> None:
        for server in self.listeners.values():
            await server.stop()
        if self._delivery:
            await self._delivery.stop()
        if self._listen:
            await self._listen.stop()
        if self._runner:
            await self._runner.cleanup()
        if self._writer:
            await self._writer.close()
        if self.pool:
            await self.pool.close()
        if self._embedded:
            await asyncio.to_thread(self._embedded.stop)
        log.info("gateway.stopped")

