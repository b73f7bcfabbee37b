"""A served gateway moves its start-up objects out of the collector's way
(gateway/heap.py), so full collections under load walk only traffic."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

from support import REPO_ROOT, base_config, free_port, to_toml, wait_for_port


async def test_serve_freezes_the_start_up_heap(db_url, tmp_path):
    cfg = base_config(dest_port=free_port(), pull=False)
    cfg["listeners"][0]["port"] = port = free_port()
    (tmp_path / "gw.toml").write_text(to_toml(cfg))
    env = dict(os.environ, LABGATE_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--config", str(tmp_path / "gw.toml"),
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    try:
        await wait_for_port(port)
        # the heap is settled after start-up: read until it says so (or exits)
        async with asyncio.timeout(30):
            while not any("gateway.heap_settled" in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                if not line:
                    break
                lines.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    out = "".join(lines) + rest.decode()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    settled = [e for e in events if e.get("event") == "gateway.heap_settled"]
    assert len(settled) == 1, out[-2000:]
    # the modules, configuration and models of a started gateway, not a handful
    assert settled[0]["permanent_objects"] > 10_000
    assert proc.returncode == 0
