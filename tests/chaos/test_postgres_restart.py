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
