"""A bad configuration file fails start-up naming the key and the fault."""
from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from gateway.config import ConfigError, load, parse
from support import REPO_ROOT, base_config

DEMO = REPO_ROOT / "examples" / "demo.toml"


def _demo() -> dict:
    return tomllib.loads(DEMO.read_text())


def test_demo_config_is_valid():
    cfg = load(DEMO)
    assert cfg.listeners[0].port == 2575 and cfg.http.port == 8080


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["listeners"][0].update(port="abc"), "listeners[0].port"),
    (lambda d: d["listeners"][0].update(port=70000), "listeners[0].port"),
    (lambda d: d["listeners"][0].update(colour="red"), "listeners[0].colour: unknown key"),
    (lambda d: d["routes"][0].update(to=["nowhere"]), "routes[0].to[0]: 'nowhere' is not defined"),
    (lambda d: d["listeners"][0].update(system="ghost"), "listeners[0].system: 'ghost'"),
    (lambda d: d["listeners"][0].update(allow=["not-an-ip"]), "allow[0]"),
    (lambda d: d["systems"].append(dict(d["systems"][0])), "is used twice"),
    (lambda d: d["systems"][0].update(roles=["superuser"]), "systems[0].roles[0]"),
    (lambda d: d.pop("systems"), "systems: required key is missing"),
    (lambda d: d["destinations"].append({"name": "x", "type": "mllp", "system": "demo-ehr"}),
     "needs host and port"),
])
def test_bad_config_names_key_and_fault(mutate, expected):
    data = _demo()
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        parse(data, "demo.toml")
    assert expected in str(exc.value)
    assert str(exc.value).startswith("demo.toml: ")


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "missing.toml")


def test_serve_with_bad_config_exits_with_message(tmp_path):
    bad = tmp_path / "gw.toml"
    bad.write_text("[[systems]]\nname = 'a'\nroles = []\n")
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(bad)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "systems[0].roles" in r.stderr


def test_base_test_config_is_valid():
    parse(base_config(dest_port=1234))
