"""Keeps this gateway's validation history in step with the other gateways'.

Every commit that adds validation history rows notifies ``labgate_history``
with the rows (migration 0017). The feed adds the rows other writers
committed to the validator's in-memory history, so DELTA-CHECK and
ORDER-DUPLICATE see a patient's previous result or order whichever gateway
stored it. Its own rows carry its instance id and are skipped: the pipeline
remembered them right after its commit. After the LISTEN connection was
re-opened it reads the tables again (``Validator.prefetch``; a row already
known is not added twice), because notifications sent meanwhile are lost.

A result committed by another gateway is known here a few milliseconds
later (the notification's trip), not at its commit: two results for one
patient that reach two gateways within that time are judged without each
other. docs/rules.md says so.
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
        self.learned = 0      # rows learned from notifications
        listener.subscribe(CHANNEL, self._on_notify, on_reconnect=self._catch_up)

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        try:
            note = orjson.loads(payload)
            if note.get("i") == self._instance:
                return
            results = [(p, c, _at(t), v, u) for p, c, t, v, u in note.get("r") or ()]
            orders = [(p, c, _at(t)) for p, c, t in note.get("o") or ()]
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, OverflowError) as e:
            # Never the payload: it holds patient keys.
            log.warning("history_feed.unreadable", error=type(e).__name__, size=len(payload))
            return
        self._validator.learn_results(results)
        self._validator.learn_orders(orders)
        self.learned += len(results) + len(orders)

    async def _catch_up(self) -> None:
        rows = await self._validator.prefetch(self._pool)
        log.info("history_feed.caught_up", rows=rows)
