"""SIGKILL the gateway after it acknowledged N messages and before it could
deliver them; after a restart all N are delivered, none twice."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from support import (REPO_ROOT, MllpReceiver, base_config, field, free_port, mllp_exchange,
                     oru_r01, to_toml, wait_for_port)

pytestmark = pytest.mark.slow
N = 40


def _start(config_path, db_url, log_path):
    env = dict(os.environ, LABGATE_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_path)],
        cwd=REPO_ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)


async def test_sigkill_after_ack_loses_nothing_and_delivers_once(db_url, tmp_path):
    mllp_port, dest_port = free_port(), free_port()
    cfg = base_config(dest_port=dest_port, max_attempts=1000, pull=False)
    cfg["listeners"][0]["port"] = mllp_port
    cfg["destinations"][0]["ack_timeout_s"] = 2.0
    config_path = tmp_path / "gw.toml"
    config_path.write_text(to_toml(cfg))
    log_path = tmp_path / "gateway.log"

    proc = _start(config_path, db_url, log_path)
    try:
        await wait_for_port(mllp_port)
        acks = await mllp_exchange("127.0.0.1", mllp_port, [oru_r01(f"K-{i}") for i in range(N)])
        assert [field(a, "MSA", 1) for a in acks] == ["AA"] * N
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    receiver = await MllpReceiver().start(dest_port)
    proc = _start(config_path, db_url, log_path)
    try:
        await receiver.wait_for(N, timeout=60)
        await asyncio.sleep(1.0)             # anything sent twice would show up now
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        await receiver.stop()
    ids = receiver.control_ids()
    assert len(ids) == N, f"{len(ids)} deliveries for {N} messages"
    assert len(set(ids)) == N
    assert proc.returncode == 0, log_path.read_text()[-2000:]
