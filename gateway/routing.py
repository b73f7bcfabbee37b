"""Which destinations a message goes to, decided from configuration."""
from __future__ import annotations

from .config import Config


class Router:
    def __init__(self, config: Config):
        self._routes = config.routes
        self._dest_type = {d.name: d.type for d in config.destinations}

    def destinations(self, source: str, message_type: str | None) -> list[tuple[str, str]]:
        """(destination, initial outbox state) for a message, in route order.

        Push destinations start ``pending``; pull destinations start ``held``
        until the receiving system fetches and marks them taken.
        """
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for route in self._routes:
            if "*" not in route.sources and source not in route.sources:
                continue
            if "*" not in route.message_types and message_type not in route.message_types:
                continue
            for dest in route.to:
                if dest not in seen:
                    seen.add(dest)
                    out.append((dest, "held" if self._dest_type[dest] == "pull" else "pending"))
        return out
