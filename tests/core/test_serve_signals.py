"""``labgate serve`` stops cleanly on SIGTERM at any time, also while it is
still starting (a supervisor's rolling restart, a failed readiness probe):
it finishes starting, stops its listeners and delivery, and exits 0."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from support import REPO_ROOT, base_config, free_port, to_toml, wait_for_port


async def test_sigterm_during_start_up_stops_cleanly(db_url, tmp_path):
    cfg = base_config(dest_port=free_port(), pull=False)
    cfg["listeners"][0]["port"] = port = free_port()
    (tmp_path / "gw.toml").write_text(to_toml(cfg))
    env = dict(os.environ, LABGATE_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--config", str(tmp_path / "gw.toml"),
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The MLLP listener is bound before the HTTP API and the heap
        # settling: the signal lands while start-up is still running.
        await wait_for_port(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    text = out.decode()
    assert proc.returncode == 0, text[-2000:]
    assert '"gateway.started"' in text and '"gateway.stopped"' in text, text[-2000:]
