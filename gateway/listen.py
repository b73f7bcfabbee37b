"""One LISTEN connection per gateway process, shared by whoever needs wake-ups.

Delivery listens for new outbox rows (``labgate_outbox``), the history feed
for other gateways' validation history (``labgate_history``). Both need the
same care: the connection is not pooled (LISTEN is per session), it drops
when PostgreSQL restarts or fails over, and what was notified while it was
down is gone. :class:`PgListener` re-opens it with backoff and then calls
every ``on_reconnect`` callback, so each subscriber can catch up by reading
the tables itself.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Awaitable, Callable

import asyncpg

from . import logging as log_setup

log = log_setup.get("labgate.listen")

CONNECT_TIMEOUT = 10.0        # opening the LISTEN connection
CHECK_SECONDS = 0.5           # how often the connection's health is looked at

Callback = Callable[[asyncpg.Connection, int, str, str], None]
Catchup = Callable[[], "None | Awaitable[None]"]


class PgListener:
    """LISTEN on several channels over one connection that keeps itself open."""

    def __init__(self, db_url: str):
        self._db_url = db_url
        self._channels: dict[str, Callback] = {}
        self._catchups: list[Catchup] = []
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def subscribe(self, channel: str, callback: Callback, on_reconnect: Catchup | None = None) -> None:
        """Register before :meth:`start`: ``callback(conn, pid, channel, payload)``
        per notification; ``on_reconnect()`` after the connection was re-opened."""
        if self._task is not None:
            raise RuntimeError("PgListener: subscribe before start()")
        self._channels[channel] = callback
        if on_reconnect is not None:
            self._catchups.append(on_reconnect)

    @property
    def active(self) -> bool:
        return bool(self._channels)

    async def start(self) -> None:
        """Open the connection (raises when PostgreSQL cannot be reached) and
        keep it open in the background. Nothing to do without subscribers."""
        if not self._channels:
            return
        await self._open()
        self._task = asyncio.create_task(self._keep_open(), name="pg-listen")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def _open(self) -> None:
        conn = await asyncpg.connect(self._db_url, timeout=CONNECT_TIMEOUT)
        try:
            for channel, callback in self._channels.items():
                await conn.add_listener(channel, callback)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _keep_open(self) -> None:
        delay = 0.2
        while not self._stopping:
            conn = self._conn
            if conn is not None and not conn.is_closed():
                await asyncio.sleep(CHECK_SECONDS)
                continue
            try:
                await self._open()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as e:
                log.warning("listen.reconnect_failed", error=type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            log.info("listen.reconnected", channels=sorted(self._channels))
            await self._catch_up()

    async def _catch_up(self) -> None:
        for catchup in self._catchups:
            try:
                result = catchup()
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as e:   # one subscriber's failure must not stop the others
                log.warning("listen.catch_up_failed", error=type(e).__name__)
