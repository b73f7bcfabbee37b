"""Which peer addresses may connect to a listener (its ``allow`` CIDR list).

Every listener (MLLP, ASTM, POCT1-A) refuses other addresses at connect and
logs the refusal; an accepted peer then acts as the listener's system.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable

from . import logging as log_setup
from .config import Listener

log = log_setup.get("labgate.listeners")


def allow_list(lst: Listener) -> Callable[[str], bool]:
    """``allowed(host) -> bool`` from the listener's CIDR allow-list."""
    networks = [ipaddress.ip_network(a, strict=False) for a in lst.allow]

    def allowed(host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if any(addr in net for net in networks if net.version == addr.version):
            return True
        log.warning("listener.peer_refused", listener=lst.name, peer=host)
        return False
    return allowed
