"""No container engine runs here, so the image and compose files are
checked for what can be checked without one: the compose file parses and
builds its gateways from our Dockerfile, the Dockerfile installs the package
exactly as CI does (scripts/test), runs as a non-root user with a health
check, and the configuration it ships is one the gateway accepts."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from gateway.config import load

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pip_install(words: list[str]) -> tuple[list[str], list[str]]:
    """(flags, requirement specs) of a ``pip install`` command line."""
    i = words.index("install")
    flags = [w for w in words[i + 1:] if w.startswith("-") and w != "-e"]
    specs = [w for w in words[i + 1:] if not w.startswith("-")]
    return flags, specs


def test_compose_parses_and_runs_intake_and_delivery_replicas_on_postgres():
    c = _compose()
    services = c["services"]
    assert "postgres" in services
    gateways = {name: s for name, s in services.items() if name != "postgres"}
    roles = {}
    for name, g in gateways.items():
        assert g["build"]["dockerfile"] == "docker/Dockerfile"
        assert (DOCKER / g["build"]["context"] / g["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert "@postgres:5432/" in g["environment"]["LABGATE_DATABASE_URL"]
        assert g["depends_on"]["postgres"]["condition"] == "service_healthy"
        # the command is one `labgate serve` accepts (ENTRYPOINT is labgate)
        from gateway.cli import _parser
        args = _parser().parse_args(g["command"])
        assert args.config == "/etc/labgate/labgate.toml"
        roles[name] = args.role
    assert sorted(roles.values()) == ["delivery", "delivery", "intake", "intake"], roles
    host_ports = [p.split(":")[0] for g in gateways.values() for p in g["ports"]]
    assert len(host_ports) == len(set(host_ports)), "replicas must publish different host ports"
    for name, g in gateways.items():   # senders reach the intake replicas only
        mllp = [p for p in g["ports"] if p.endswith(":2575")]
        assert bool(mllp) == (roles[name] == "intake"), name


def test_compose_keeps_durability_on():
    cmd = " ".join(_compose()["services"]["postgres"]["command"])
    assert "synchronous_commit=on" in cmd
    assert "fsync=off" not in cmd and "synchronous_commit=off" not in cmd


def test_dockerfile_installs_what_ci_installs():
    ci = (ROOT / "scripts" / "test").read_text()
    ci_line = next(ln for ln in ci.splitlines() if "pip install" in ln)
    ci_flags, ci_specs = _pip_install(shlex.split(ci_line))
    runs = [args for ins, args in _instructions() if ins == "RUN" and "pip install" in args]
    assert len(runs) == 1, runs
    flags, specs = _pip_install(shlex.split(runs[0]))
    assert specs == ci_specs, f"image installs {specs}, CI installs {ci_specs}"
    assert flags == ci_flags


def test_dockerfile_is_slim_non_root_and_health_checked():
    ins = _instructions()
    assert ins[0][0] == "FROM" and ins[0][1].endswith("-slim")
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = [a for i, a in ins if i == "HEALTHCHECK"]
    assert health and "/readyz" in health[0]
    copies = [a.split()[0] for i, a in ins if i == "COPY"]
    for src in copies:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"


def test_shipped_configuration_is_valid_and_listens_beyond_loopback():
    cfg = load(DOCKER / "labgate.toml")
    assert cfg.http.host == "0.0.0.0"
    assert all(lst.host == "0.0.0.0" for lst in cfg.listeners)
    assert any(d.type == "mllp" and d.ordered for d in cfg.destinations)


def test_dockerfile_copies_every_package_pyproject_ships():
    import tomllib
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {a.split()[0].rstrip("/") for i, a in _instructions() if i == "COPY"}
    for pattern in include:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
