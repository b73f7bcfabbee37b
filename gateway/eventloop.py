"""The event loop a gateway process runs on.

uvloop (libuv, by the authors of asyncpg) is the default where it is
installed: the gateway is one event loop per process and its socket and
transport work runs in C there. Measured end to end the gain is small
(~1-4 % gateway CPU per message, docs/performance.md), because the time
goes to parsing, mapping and PostgreSQL, not to the loop.
``gateway.event_loop = "asyncio"`` chooses the standard loop, e.g. to rule
the loop out while chasing a fault.
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine


def run(main: Coroutine[Any, Any, Any], kind: str = "auto") -> Any:
    """Run ``main`` to completion on the chosen loop: "auto" (uvloop if
    installed), "uvloop" (required) or "asyncio"."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                main.close()
                raise RuntimeError("gateway.event_loop = \"uvloop\" but uvloop is not installed") from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def running_loop_name() -> str:
    """For the start-up log line: which loop this process is on."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
