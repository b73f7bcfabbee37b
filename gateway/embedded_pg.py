"""The embedded PostgreSQL a newcomer (and the test suite) runs on.

When no database URL is configured, labgate starts a real PostgreSQL server
from the ``pgserver`` wheel in ``$LABGATE_HOME/pgdata`` and stops it on exit.
A server left running by a killed gateway is found and reused on restart.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("LABGATE_HOME", "./var")).resolve()


# A fresh cluster has no WAL segments to recycle, so with the default
# wal_init_zero = on every new 16 MB segment is zero-filled inside some
# transaction's commit: at 500 msg/s that was a 50-80 ms stall every ~2 s and
# most of the ACK latency's p99 (docs/performance.md). Durability is
# unchanged: commits still fsync the WAL they wrote. Reloadable, no restart.
_SETTINGS = """
ALTER SYSTEM SET wal_init_zero = off;
SELECT pg_reload_conf();
"""


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, stop_on_exit: bool = True):
        self.data_dir = Path(data_dir)
        self._stop_on_exit = stop_on_exit
        self._server = None

    def start(self) -> str:
        """Start (or join) the server and return its connection URL."""
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(
            self.data_dir, cleanup_mode="stop" if self._stop_on_exit else None)
        self._server.psql(_SETTINGS)
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
