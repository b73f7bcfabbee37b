"""The gateway's one configuration file (TOML), validated at start-up.

A bad file fails start-up with :class:`ConfigError`, whose message names the
file, the key (``listeners[0].port``) and what is wrong with it. The format
is documented in docs/configuration.md; examples/demo.toml is a working one.
"""
from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ROLES = ("ehr", "instrument", "lis", "admin", "auditor")
Name = str  # lower-case identifiers, checked by _check_name


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Strict):
    name: str = Field("LABGATE", description="MSH-3 of the acknowledgements the gateway sends")
    facility: str = Field("", description="MSH-4 of the acknowledgements the gateway sends")


class HttpSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)


class DatabaseSection(_Strict):
    url: str | None = Field(None, description="PostgreSQL URL; LABGATE_DATABASE_URL wins; unset = embedded")
    pool_min: int = Field(2, ge=1)
    pool_max: int = Field(10, ge=1)
    group_commit_max: int = Field(256, ge=1, le=10_000)
    writers: int = Field(2, ge=1, le=16)


class System(_Strict):
    name: Name
    roles: list[Literal["ehr", "instrument", "lis", "admin", "auditor"]] = Field(min_length=1)
    description: str = ""
    rules: dict[str, Literal["reject", "warn", "off"]] = Field(
        default_factory=dict, description="per-rule action for messages from this system")

    @model_validator(mode="after")
    def _check_rules(self):
        from gateway.validation import check_settings
        problems = check_settings(self.rules)
        if problems:
            raise ValueError("rules: " + "; ".join(problems))
        return self


class ValidationSection(_Strict):
    tables_dir: str | None = Field(None, description="directory of rule tables; default: the shipped ones")
    clock_skew_minutes: float = Field(5.0, ge=0, le=1440)
    allow_synthetic_ids: bool = Field(False, description="accept Tenor test person numbers (month + 80)")


class Listener(_Strict):
    name: Name
    protocol: Literal["mllp"]
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    system: Name = Field(description="the system identity every peer of this listener acts as")
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"],
                             description="peer addresses (CIDR) allowed to connect")
    max_message_bytes: int = Field(1_048_576, ge=1024, le=64 * 1024 * 1024)
    idle_timeout_s: float = Field(300.0, gt=0)
    max_connections: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _check_allow(self):
        for i, net in enumerate(self.allow):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"allow[{i}]: {net!r} is not an IP address or CIDR network")
        return self


class Destination(_Strict):
    name: Name
    type: Literal["mllp", "pull"]
    system: Name = Field(description="the system that receives (mllp) or fetches (pull) the messages")
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    max_attempts: int = Field(8, ge=1, le=1000)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    ack_timeout_s: float = Field(30.0, gt=0)
    ordered: bool = Field(True, description="deliver strictly in order (one sender at a time across gateways)")
    batch: int = Field(50, ge=1, le=1000)

    @model_validator(mode="after")
    def _check_transport(self):
        if self.type == "mllp" and (not self.host or not self.port):
            raise ValueError("an mllp destination needs host and port")
        return self


class Route(_Strict):
    name: Name
    sources: list[str] = Field(min_length=1, description='source system names, or "*"')
    message_types: list[str] = Field(default_factory=lambda: ["*"], description='e.g. "ORU^R01", or "*"')
    to: list[Name] = Field(min_length=1)


class Config(_Strict):
    gateway: GatewaySection = GatewaySection()
    http: HttpSection = HttpSection()
    database: DatabaseSection = DatabaseSection()
    validation: ValidationSection = ValidationSection()
    systems: list[System] = Field(min_length=1)
    listeners: list[Listener] = Field(default_factory=list)
    destinations: list[Destination] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self):
        _unique("systems", self.systems)
        _unique("listeners", self.listeners)
        _unique("destinations", self.destinations)
        _unique("routes", self.routes)
        systems = {s.name for s in self.systems}
        dests = {d.name for d in self.destinations}
        for i, lst in enumerate(self.listeners):
            _known(f"listeners[{i}].system", lst.system, systems, "systems")
        for i, d in enumerate(self.destinations):
            _known(f"destinations[{i}].system", d.system, systems, "systems")
        for i, r in enumerate(self.routes):
            for j, s in enumerate(r.sources):
                if s != "*":
                    _known(f"routes[{i}].sources[{j}]", s, systems, "systems")
            for j, t in enumerate(r.to):
                _known(f"routes[{i}].to[{j}]", t, dests, "destinations")
        return self

    def system(self, name: str) -> System:
        return next(s for s in self.systems if s.name == name)

    def destination(self, name: str) -> Destination:
        return next(d for d in self.destinations if d.name == name)


def _unique(section: str, items) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.name in seen:
            raise ValueError(f"{section}[{i}].name: {item.name!r} is used twice; names must be unique")
        seen.add(item.name)


def _known(key: str, value: str, known: set[str], section: str) -> None:
    if value not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ValueError(f"{key}: {value!r} is not defined in [[{section}]] (defined: {listed})")


def load(path: str | Path) -> Config:
    """Read and validate a configuration file, or raise ConfigError."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse(data, origin=str(path))


def parse(data: dict, origin: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{origin}: " + "; ".join(_describe(err) for err in e.errors())) from None


def _describe(err: dict) -> str:
    key = _key(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (check the spelling; see docs/configuration.md)"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    if "input" in err and err["type"] not in ("value_error",) and not isinstance(err["input"], dict):
        return f"{key}: {msg} (got {err['input']!r})"
    return f"{key}: {msg}" if key else msg


def _key(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after",) or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out
