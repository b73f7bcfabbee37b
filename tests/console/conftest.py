"""Fixtures for the console tests (helpers are in console_support.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from console_support import ADMIN_PW, AUDITOR_PW, Console, crp_table_dir  # noqa: E402

from support import MllpReceiver, base_config  # noqa: E402


POCT_SERIAL = "000987"   # adapters/poct1a/simulator.py's default serial


def with_poct_instrument(cfg: dict) -> dict:
    """Add a POCT1-A listener, the simulator's instrument and its operator."""
    cfg["systems"].append({"name": "poc-poct", "roles": ["instrument"]})
    cfg["listeners"].append({"name": "poct-in", "protocol": "poct1a", "host": "127.0.0.1",
                             "port": 0, "system": "poc-poct"})
    cfg["routes"].append({"name": "poct-results", "sources": ["poc-poct"],
                          "message_types": ["POCT1A-OBS"], "to": ["ehr-pull"]})
    cfg["instruments"] = [{"serial": POCT_SERIAL, "model": "LABGATE-SIM", "site": "Sykehjem A",
                           "protocol": "poct1a", "system": "poc-poct", "code_map": "labgate-sim",
                           "analyses": ["NPU27300", "NPU19748"]}]
    cfg["operators"] = [{"id": "OP017", "name": "Kari Hansen", "hpr": "9144889",
                         "analyses": ["NPU19748", "NPU27300"], "sites": ["Sykehjem A"]}]
    return cfg


@pytest.fixture
async def console(gateway_factory, tmp_path, request):
    """A started gateway with the console, an MLLP destination and two users
    (admin ``ada`` and auditor ``otto``); tests marked ``console_instruments``
    also get a POCT1-A instrument."""
    receiver = await MllpReceiver().start()
    cfg = base_config(dest_port=receiver.port, max_attempts=2)
    if request.node.get_closest_marker("console_instruments"):
        with_poct_instrument(cfg)
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


def pytest_configure(config):
    config.addinivalue_line("markers", "console_instruments: the console gateway gets a POCT1-A instrument")
