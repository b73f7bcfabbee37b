"""Prometheus metrics of one gateway process (served on /metrics).

Counters are per process; queue depth and age are read from the database at
scrape time, so every gateway sharing a database reports the same backlog.
"""
from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily


# The *_created series double the output and no dashboard of ours uses them.
prometheus_client.disable_created_metrics()


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.received = Counter("labgate_messages_received", "Messages received",
                                ["source", "type"], registry=self.registry)
        self.accepted = Counter("labgate_messages_accepted", "Messages accepted and stored",
                                ["source", "type"], registry=self.registry)
        self.rejected = Counter("labgate_messages_rejected", "Messages rejected (stored as rejected)",
                                ["source", "type"], registry=self.registry)
        self.duplicates = Counter("labgate_messages_duplicate", "Duplicate control ids acknowledged again",
                                  ["source"], registry=self.registry)
        self.store_failures = Counter("labgate_store_failures", "Messages not stored (no positive ACK)",
                                      ["source"], registry=self.registry)
        self.delivery_attempts = Counter("labgate_delivery_attempts", "Delivery attempts",
                                         ["destination"], registry=self.registry)
        self.delivery_failures = Counter("labgate_delivery_failures", "Failed delivery attempts",
                                         ["destination", "reason"], registry=self.registry)
        self.delivery_locked_out = Counter(
            "labgate_delivery_locked_out", "Delivery rounds that found another gateway delivering "
            "to the (ordered) destination", ["destination"], registry=self.registry)
        self.dead_letters = Counter("labgate_dead_letters", "Outbox rows dead-lettered",
                                    ["destination"], registry=self.registry)
        self.listener_connections = Gauge("labgate_listener_connections", "Open connections",
                                          ["listener"], registry=self.registry)
        self._outbox_rows: list = []
        self.registry.register(_OutboxCollector(self))

    def set_outbox_snapshot(self, rows: list) -> None:
        """rows: (destination, state, depth, oldest_age_seconds) from the database."""
        self._outbox_rows = rows

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _OutboxCollector:
    def __init__(self, metrics: Metrics):
        self._m = metrics

    def collect(self):
        depth = GaugeMetricFamily("labgate_outbox_depth", "Outbox rows waiting",
                                  labels=["destination", "state"])
        age = GaugeMetricFamily("labgate_outbox_oldest_age_seconds",
                                "Age of the oldest waiting outbox row", labels=["destination", "state"])
        for dest, state, n, oldest in self._m._outbox_rows:
            depth.add_metric([dest, state], n)
            age.add_metric([dest, state], oldest or 0.0)
        yield depth
        yield age
