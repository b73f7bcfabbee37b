"""Metrics of the security controls.

``labgate_limit_exceeded_total{limit, edge}`` counts every refusal by a limit
(``rate``, ``json_depth``, ``json_size``, ``body_size``, …). Listener
refusals (allow-list, connections per peer, oversize) are read from each
listener's ``stats()`` at scrape time as ``labgate_listener_refusals_total``.
"""
from __future__ import annotations

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily

_STATS = ("connections_refused", "oversize", "idle_timeouts")


def limit_counter(metrics) -> Counter:
    """The process's limit counter, registered once on ``metrics.registry``."""
    counter = getattr(metrics, "limit_exceeded", None)
    if counter is None:
        counter = Counter("labgate_limit_exceeded", "Requests or messages refused by a limit",
                          ["limit", "edge"], registry=metrics.registry)
        metrics.limit_exceeded = counter
    return counter


class ListenerRefusals:
    """Collector: refusal counters of every started listener (``stats()``)."""

    def __init__(self, gateway):
        self._gw = gateway

    def collect(self):
        fam = CounterMetricFamily("labgate_listener_refusals",
                                  "Connections or messages a listener refused", labels=["listener", "reason"])
        for name, server in list(getattr(self._gw, "listeners", {}).items()):
            stats = getattr(server, "stats", None)
            if stats is None:
                continue
            s = stats()
            for key in _STATS:
                if key in s:
                    fam.add_metric([name, key], s[key])
        yield fam


def register_listener_refusals(gateway) -> None:
    if not getattr(gateway.metrics, "_listener_refusals", False):
        gateway.metrics.registry.register(ListenerRefusals(gateway))
        gateway.metrics._listener_refusals = True
