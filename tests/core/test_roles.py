"""One gateway as two processes: ``--role intake`` and ``--role delivery``.

Under load, delivery on the intake's event loop falls behind intake (about
one ordered send per two turns of a busy loop; docs/performance.md). Run apart, an
intake process stores and acknowledges and a delivery process on the same
database delivers what it stored, through the same outbox, locks and
NOTIFY as two full gateways would.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import aiohttp
import pytest
from structlog.testing import capture_logs

from support import (REPO_ROOT, MllpReceiver, base_config, field, free_port, mllp_exchange, oru_r01,
                     to_toml, wait_for_port)


async def _send(gw, ctrls: list[str]) -> None:
    acks = await mllp_exchange("127.0.0.1", gw.listeners["mllp-in"].port, [oru_r01(c) for c in ctrls])
    assert [field(a, "MSA", 1) for a in acks] == ["AA"] * len(ctrls)


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}",
                                                     allow_redirects=False) as r:
        return r.status, await r.text()


async def _until_delivered(pool, n: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'delivered'") < n:
        assert asyncio.get_running_loop().time() < deadline, f"fewer than {n} rows delivered"
        await asyncio.sleep(0.02)


def _attempts(metrics_text: str) -> float:
    m = re.search(r'^labgate_delivery_attempts_total\{destination="lis-mllp"\} (\S+)$', metrics_text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_intake_stores_and_the_delivery_process_delivers_in_order(gateway_factory):
    rx = await MllpReceiver().start()
    try:
        cfg = base_config(dest_port=rx.port, pull=False)
        with capture_logs() as logs:
            intake = await gateway_factory(cfg, role="intake")
        # It says so at start-up.
        assert [e for e in logs if e["event"] == "gateway.no_delivery_here"]
        await _send(intake, [f"R-{i}" for i in range(20)])
        # Longer than the 1 s poll a delivery loop would wake at: none runs.
        await asyncio.sleep(1.5)
        assert rx.messages == []
        assert await intake.pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'pending'") == 20

        delivery = await gateway_factory(cfg, role="delivery")
        assert delivery.listeners == {}
        await rx.wait_for(20)
        ids = await intake.pool.fetch("SELECT id FROM outbox ORDER BY id")
        assert rx.control_ids() == [f"LG{r['id']}" for r in ids]

        await _send(intake, ["R-20", "R-21"])       # woken by the intake's NOTIFY
        await rx.wait_for(22)
        # The outcome is committed after the receiver's ACK.
        await _until_delivered(intake.pool, 22)
        assert len(set(rx.control_ids())) == 22
        # The counters live where the sending happens.
        assert _attempts((await _get(delivery.http_port, "/metrics"))[1]) == 22
        assert _attempts((await _get(intake.http_port, "/metrics"))[1]) == 0
    finally:
        await rx.stop()


async def test_a_delivery_process_serves_health_metrics_and_pull_but_not_the_pipeline(gateway_factory):
    cfg = base_config()
    intake = await gateway_factory(cfg, role="intake")
    delivery = await gateway_factory(cfg, role="delivery")
    status, body = await _get(delivery.http_port, "/readyz")
    assert status == 200 and '"database": "ok"' in body.replace('":"', '": "')
    assert (await _get(delivery.http_port, "/healthz"))[0] == 200
    assert (await _get(delivery.http_port, "/fhir/Bundle?destination=ehr-pull"))[0] == 401   # exists
    assert (await _get(delivery.http_port, "/console"))[0] == 404
    assert (await _get(intake.http_port, "/console"))[0] != 404
    from gateway import tokens
    async with intake.pool.acquire() as conn:
        hdr = {"Authorization": f"Bearer {(await tokens.create(conn, 'ehr'))[1]}"}
    statuses = {}
    async with aiohttp.ClientSession() as s:
        for gw in (intake, delivery):
            async with s.post(f"http://127.0.0.1:{gw.http_port}/fhir/ServiceRequest", json={},
                              headers=hdr) as r:
                statuses[gw.role] = r.status
    assert statuses["delivery"] == 404 and statuses["intake"] not in (401, 404), statuses


def test_an_unknown_role_is_refused():
    from gateway.app import Gateway
    from gateway.config import parse
    with pytest.raises(ValueError, match="role"):
        Gateway(parse(base_config()), role="both")


async def _serve(tmp_path, db_url, *args: str):
    env = dict(os.environ, LABGATE_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--config", str(tmp_path / "gw.toml"), *args,
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def test_serve_role_delivery_binds_its_own_http_port_and_no_listener(db_url, tmp_path):
    cfg = base_config(dest_port=free_port(), pull=False)
    cfg["listeners"][0]["port"] = mllp_port = free_port()
    cfg["http"]["port"] = config_http = free_port()
    (tmp_path / "gw.toml").write_text(to_toml(cfg))
    http_port = free_port()
    proc = await _serve(tmp_path, db_url, "--role", "delivery", "--http-port", str(http_port))
    try:
        await wait_for_port(http_port)
        assert (await _get(http_port, "/healthz"))[0] == 200
        for port in (mllp_port, config_http):
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert '"role": "delivery"' in out.decode().replace('":"', '": "')


@pytest.mark.parametrize("args, says", [
    (("--http-port", "70000"), "--http-port 70000 is not a port"),
    (("--role", "both"), "invalid choice: 'both'"),
])
async def test_serve_refuses_bad_role_arguments(db_url, tmp_path, args, says):
    (tmp_path / "gw.toml").write_text(to_toml(base_config()))
    proc = await _serve(tmp_path, db_url, *args)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2
    assert says in out.decode()
