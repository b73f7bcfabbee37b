"""A destination that is down while results arrive gets the whole backlog,
in order and once each, when it comes back."""
from __future__ import annotations

import pytest

from bench.chaos import destination_down

pytestmark = pytest.mark.slow
N = 200


async def test_backlog_drains_in_order_after_destination_returns(db_url, tmp_path):
    c = await destination_down(db_url, tmp_path, N, down_s=2.0, timeout=120)
    assert c.acked == c.stored == N, c
    assert c.delivered == N and c.lost == 0, c
    assert c.repeats == 0, c
    assert c.out_of_order == 0, c
