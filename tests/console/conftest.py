"""Fixtures for the console tests (helpers are in console_support.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from console_support import ADMIN_PW, AUDITOR_PW, Console, crp_table_dir  # noqa: E402

from support import MllpReceiver, base_config  # noqa: E402


@pytest.fixture
async def console(gateway_factory, tmp_path):
    """A started gateway with the console, an MLLP destination and two users
    (admin ``ada`` and auditor ``otto``)."""
    receiver = await MllpReceiver().start()
    cfg = base_config(dest_port=receiver.port, max_attempts=2)
    tables = crp_table_dir(tmp_path, "500")
    cfg["validation"] = {"tables_dir": str(tables)}
    cfg["console"] = {"secure_cookie": True, "lockout_attempts": 3}
    cfg["alerts"] = {"interval_s": 3600}
    gw = await gateway_factory(cfg)
    c = Console(gw=gw, receiver=receiver, tables=tables, base=f"http://127.0.0.1:{gw.http_port}")
    await c.add_user("ada", ADMIN_PW, ["admin"])
    await c.add_user("otto", AUDITOR_PW, ["auditor"])
    yield c
    for cl in c.clients:
        await cl.close()
    await receiver.stop()
