"""gateway.event_loop picks the loop a gateway process runs on."""
from __future__ import annotations

import importlib.util

import pytest

from gateway import eventloop
from gateway.config import ConfigError, parse
from support import base_config

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _which() -> str:
    return eventloop.running_loop_name()


def test_asyncio_is_the_standard_loop():
    assert eventloop.run(_which(), "asyncio") == "asyncio"


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed on this platform")
@pytest.mark.parametrize("kind", ["auto", "uvloop"])
def test_auto_and_uvloop_run_on_uvloop(kind):
    assert eventloop.run(_which(), kind) == "uvloop"


def test_config_default_is_auto_and_unknown_loop_is_refused():
    assert parse(base_config(), "gw.toml").gateway.event_loop == "auto"
    data = base_config()
    data["gateway"]["event_loop"] = "trio"
    with pytest.raises(ConfigError, match=r"gateway\.event_loop"):
        parse(data, "gw.toml")
