"""Keeps this gateway's validation and QC history in step with the other gateways'.

Every commit that adds validation history rows (migration 0017) or judged
QC runs (0018) notifies ``labgate_history`` with the rows. The feed adds
what other writers committed to this gateway's in-memory state: the
validator's history (DELTA-CHECK, ORDER-DUPLICATE) and the instrument
registry's QC state (QC-LOCKOUT), so each rule sees a patient's previous
result, a recent order or an instrument's failed QC whichever gateway
stored it. Its own rows carry its instance id and are skipped: the
pipelines remembered them right after their commit. After the LISTEN
connection was re-opened it reads the tables again (a row already known
changes nothing), because notifications sent meanwhile are lost.

A row committed by another gateway is known here a few milliseconds later
(the notification's trip), not at its commit: two messages that reach two
gateways within that time are judged without each other. docs/rules.md
says so.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import orjson

from . import logging as log_setup
from .listen import PgListener

log = log_setup.get("labgate.history_feed")

CHANNEL = "labgate_history"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def new_instance_id() -> str:
    """A gateway process's id for the ``labgate.instance`` session setting."""
    return os.urandom(8).hex()


def _at(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


class HistoryFeed:
    """Subscribes a validator to the history other gateways commit."""

    def __init__(self, validator, pool, instance: str, listener: PgListener):
        self._validator = validator
        self._pool = pool
        self._instance = instance
        self._qc_registry = None
        self.learned = 0      # rows learned from notifications
        listener.subscribe(CHANNEL, self._on_notify, on_reconnect=self._catch_up)

    async def attach_qc(self, registry) -> None:
        """Also keep this instrument registry's QC state in step. The registry
        exists once the instrument side has started; what was committed
        between its loading and now is read again here."""
        self._qc_registry = registry
        async with self._pool.acquire() as conn:
            await registry.reload_qc(conn)

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        try:
            note = orjson.loads(payload)
            if note.get("i") == self._instance:
                return
            results = [(p, c, _at(t), v, u) for p, c, t, v, u in note.get("r") or ()]
            orders = [(p, c, _at(t)) for p, c, t in note.get("o") or ()]
            qc = [(serial, a, bool(ok), _at(t)) for serial, a, ok, t in note.get("q") or ()]
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, OverflowError) as e:
            # Never the payload: it holds patient keys.
            log.warning("history_feed.unreadable", error=type(e).__name__, size=len(payload))
            return
        self._validator.learn_results(results)
        self._validator.learn_orders(orders)
        if self._qc_registry is not None:
            self._qc_registry.learn_qc(qc)
        self.learned += len(results) + len(orders) + len(qc)

    async def _catch_up(self) -> None:
        rows = await self._validator.prefetch(self._pool)
        if self._qc_registry is not None:
            async with self._pool.acquire() as conn:
                await self._qc_registry.reload_qc(conn)
        log.info("history_feed.caught_up", rows=rows)
