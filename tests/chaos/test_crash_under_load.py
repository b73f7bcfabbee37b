"""SIGKILL a gateway in the middle of a load; after a restart every
acknowledged message is stored and delivered, in order, and a repeated
delivery can only be the one batch that was in flight when it died."""
from __future__ import annotations

import pytest

from bench.chaos import sigkill_midload

pytestmark = pytest.mark.slow
N = 300
BATCH = 20   # the delivery batch in bench.harness.gateway_toml(batch=20)


async def test_sigkill_mid_load_loses_nothing(db_url, tmp_path):
    c = await sigkill_midload(db_url, tmp_path, N, timeout=120)
    assert c.acked == N, c
    assert c.stored == N, c
    assert c.delivered == N and c.lost == 0, c
    assert c.out_of_order == 0, c
    # at-least-once: only rows sent but not yet committed when it died come twice
    assert c.repeats <= BATCH, c
    assert c.notes["exit_codes"] == [0], c


async def test_sigkill_of_the_delivery_process_mid_load_loses_nothing(db_url, tmp_path):
    """Intake and delivery as separate processes (``serve --role``): the
    delivery process dies mid-load; intake acknowledges on, and the restarted
    delivery process delivers everything, in order."""
    from bench.chaos import sigkill_delivery_midload
    c = await sigkill_delivery_midload(db_url, tmp_path, N, timeout=120)
    assert c.acked == c.stored == N, c
    assert c.delivered == N and c.lost == 0, c
    assert c.out_of_order == 0, c
    assert c.repeats <= BATCH, c
    assert c.sender_retries == 0, c          # intake never stopped answering
    assert c.notes["delivered_before_kill"] < N, c
    assert c.notes["exit_codes"] == [0, 0], c
