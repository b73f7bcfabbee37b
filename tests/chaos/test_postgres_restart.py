"""Restart PostgreSQL under load: senders get no ACK (or a negative one),
retry, and nothing is lost or stored twice. A delivery transaction the
restart rolls back after the destination ACKed is sent again (at-least-once,
same ``LG<id>`` control id); nothing else is. Uses its own embedded
PostgreSQL so the session server other tests share is left alone."""
from __future__ import annotations

import pytest

from bench.chaos import pg_restart_midload
from bench.harness import Postgres

pytestmark = pytest.mark.slow
N = 300
BATCH = 20   # the delivery batch in bench.harness.gateway_toml(batch=20)


@pytest.fixture
def own_pg(tmp_path):
    pg = Postgres(tmp_path / "pgdata")
    pg.start()
    yield pg
    pg.stop()


async def test_postgres_restart_mid_load_loses_nothing(own_pg, tmp_path):
    db_url = await own_pg.create_database("chaos")
    work = tmp_path / "work"
    work.mkdir()
    c = await pg_restart_midload(own_pg, db_url, work, N, timeout=120)
    assert c.acked == N, c
    assert c.stored == N, c
    assert c.delivered == N and c.lost == 0, c
    assert c.out_of_order == 0, c
    assert c.repeats <= BATCH, c
    assert c.notes["gateway_alive_after"], c
    assert c.notes["exit_codes"] == [0], c


async def test_notify_wakes_idle_workers_again_after_postgres_restart(own_pg, tmp_path):
    db_url = await own_pg.create_database("chaos_notify")
    work = tmp_path / "work"
    work.mkdir()
    c = await pg_restart_midload(own_pg, db_url, work, 60, timeout=120, idle_probes=7)
    assert c.delivered == c.n and c.lost == 0, c
    lat = sorted(c.notes["idle_wakeup_after_restart_ms"])
    # the poll alone gives U(0, 1000 ms); a median under 150 ms needs NOTIFY
    assert lat[len(lat) // 2] < 150, c
