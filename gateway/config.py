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

from .instruments.settings import Instrument, InstrumentSettings, Operator, QcTarget

ROLES = ("ehr", "instrument", "lis", "admin", "auditor")
Name = str  # lower-case identifiers, checked by _check_name


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# What one ``labgate serve`` process runs (``--role``; gateway/app.py).
PROCESS_ROLES = ("all", "intake", "delivery")


class GatewaySection(_Strict):
    name: str = Field("LABGATE", description="MSH-3 of the acknowledgements the gateway sends")
    facility: str = Field("", description="MSH-4 of the acknowledgements the gateway sends")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="auto: uvloop where installed, else asyncio's own loop (docs/performance.md)")


class HttpClientCert(_Strict):
    """One client certificate (mTLS) bound to a system, by subject or fingerprint."""
    system: Name
    subject: str | None = Field(None, description='RFC 4514 subject, e.g. "CN=ehr-1,O=Kommune,C=NO"')
    fingerprint_sha256: str | None = Field(None, description="hex SHA-256 of the DER certificate")

    @model_validator(mode="after")
    def _check_match(self):
        if not self.subject and not self.fingerprint_sha256:
            raise ValueError("a client certificate needs subject or fingerprint_sha256")
        return self


class HttpTls(_Strict):
    """HTTPS (TLS 1.2+) and client certificates; see docs/security.md."""
    cert_file: str = Field(description="server certificate chain (PEM)")
    key_file: str = Field(description="server private key (PEM); must not be readable by group/others")
    client_ca_file: str | None = Field(None, description="CA bundle that signs client certificates")
    client_cert: Literal["none", "optional", "required"] = Field(
        "optional", description="ask for a client certificate; 'required' refuses connections without one")
    clients: list[HttpClientCert] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_ca(self):
        if self.client_cert != "none" and not self.client_ca_file:
            raise ValueError("client_ca_file is needed unless client_cert = 'none'")
        return self


class HttpSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(64, ge=2, le=512, description="deepest JSON nesting accepted")
    requests_per_minute: int = Field(600, ge=0, description="per token (or client cert, or peer); 0 = no limit")
    tls: HttpTls | None = None


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
    ack_mode: Literal["original", "enhanced"] = Field(
        "original", description="HL7 v2: 'enhanced' honours MSH-15/16 (commit ACK on the connection, "
                                "application ACK via ack_destination); 'original' always answers AA/AE/AR")
    ack_destination: Name | None = Field(
        None, description="mllp destination that takes this system's application ACKs (enhanced mode)")

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
    operator_authorisation: Literal["reject", "flag"] = Field(
        "reject", description="OPERATOR-NOT-CERTIFIED default: reject the result, or accept and flag it "
                              "(a system's own rules setting wins)")
    duplicate_order_window_hours: float = Field(
        24.0, gt=0, le=24 * 365, description="ORDER-DUPLICATE: same analysis, same patient within this")
    history_max_keys: int = Field(
        200_000, ge=100, description="(patient, analysis) pairs kept in memory for delta/duplicate checks")


class ConsoleSection(_Strict):
    """Console user sessions, login throttle and lockout (docs/console.md).

    The throttle (per client address, and per address + account name) is the
    first line and answers 429; the account lockout, which refuses the account
    from every address, needs more failures than one address may make, so a
    single address cannot lock an administrator out.
    """
    session_minutes: float = Field(480.0, gt=0, le=7 * 24 * 60, description="session lifetime")
    login_failures_per_address: int = Field(
        10, ge=1, le=10_000,
        description="failed logins from one client address (IPv6: its /64) per window before 429")
    login_failures_per_address_account: int = Field(
        5, ge=1, le=1_000,
        description="failed logins for one account name from one address per window before 429")
    login_throttle_minutes: float = Field(
        15.0, gt=0, le=24 * 60,
        description="throttle window; a throttled address (or address + account) waits this long")
    lockout_attempts: int = Field(
        20, ge=1, le=1_000,
        description="failed logins in a row, from any address, that lock the account for everyone")
    lockout_minutes: float = Field(15.0, gt=0, description="how long a locked account stays locked")
    secure_cookie: bool = Field(True, description="mark the session cookie Secure (HTTPS or localhost)")


class RetentionSection(_Strict):
    """Pruning of message content (raw, bundle); metadata and audit are kept."""
    content_days: float | None = Field(None, gt=0, description="prune content older than this; unset = keep")
    batch: int = Field(500, ge=1, le=100_000, description="rows per pruning transaction")
    interval_s: float = Field(300.0, gt=0)


class AlertsSection(_Strict):
    """Operational alerts: a log event always, and a webhook POST when configured."""
    webhook_url: str | None = None
    oldest_waiting_minutes: float = Field(30.0, gt=0)
    critical_unacknowledged_minutes: float = Field(30.0, gt=0)
    interval_s: float = Field(60.0, gt=0)


class MllpClientCert(_Strict):
    """A client certificate (mTLS) on an MLLP listener bound to a source system."""
    system: Name
    subject: str | None = Field(None, description='RFC 4514 subject, e.g. "CN=lis-1,O=Lab,C=NO"')
    cn: str | None = Field(None, description="the subject's common name alone")

    @model_validator(mode="after")
    def _check_match(self):
        if not self.subject and not self.cn:
            raise ValueError("a client certificate needs subject or cn")
        return self


class ListenerTls(_Strict):
    """MLLP over TLS 1.2+; with clients listed, the certificate names the source system."""
    cert_file: str = Field(description="server certificate chain (PEM)")
    key_file: str = Field(description="server private key (PEM); owner-only file")
    client_ca_file: str | None = Field(None, description="CA bundle that signs client certificates")
    require_client_cert: bool = Field(True, description="refuse connections without a valid client cert")
    clients: list[MllpClientCert] = Field(
        default_factory=list, description="certificate → system; unset = every peer is `system`")

    @model_validator(mode="after")
    def _check_ca(self):
        if (self.require_client_cert or self.clients) and not self.client_ca_file:
            raise ValueError("client_ca_file is needed to verify client certificates")
        return self


class DestinationTls(_Strict):
    """MLLP over TLS 1.2+ to a destination."""
    ca_file: str | None = Field(None, description="CA bundle for the server; unset = system trust store")
    cert_file: str | None = Field(None, description="our client certificate (PEM), for mTLS")
    key_file: str | None = Field(None, description="its private key (PEM); owner-only file")
    server_hostname: str | None = Field(None, description="name to verify the server certificate against")

    @model_validator(mode="after")
    def _check_pair(self):
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        return self


class Listener(_Strict):
    name: Name
    protocol: Literal["mllp", "astm", "poct1a"]
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    system: Name = Field(description="the system identity every peer of this listener acts as")
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"],
                             description="peer addresses (CIDR) allowed to connect")
    max_message_bytes: int = Field(1_048_576, ge=1024, le=64 * 1024 * 1024)
    idle_timeout_s: float = Field(300.0, gt=0)
    max_connections: int = Field(256, ge=1)
    max_connections_per_peer: int = Field(64, ge=1, description="open connections from one address")
    tls: ListenerTls | None = Field(None, description="MLLP over TLS (mllp listeners)")

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
    type: Literal["mllp", "pull", "orders", "fhir"]
    system: Name = Field(description="the system that receives (mllp, fhir) or fetches (pull) the messages")
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    base_url: str | None = Field(None, description="fhir: the receiving server's FHIR base URL")
    token_env: str | None = Field(None, description="fhir: environment variable holding the bearer token to send")
    max_attempts: int = Field(8, ge=1, le=1000)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    ack_timeout_s: float = Field(30.0, gt=0)
    ordered: bool = Field(True, description="deliver strictly in order (one sender at a time across gateways)")
    batch: int = Field(50, ge=1, le=1000)
    gather_ms: float = Field(10.0, ge=0, le=1000, description=(
        "after a round that emptied the queue, wait this long before the next, so rows "
        "arriving meanwhile share one claim and one commit; 0 = claim again at once"))
    tls: DestinationTls | None = Field(None, description="MLLP over TLS (mllp destinations)")

    @model_validator(mode="after")
    def _check_transport(self):
        if self.type == "mllp" and (not self.host or not self.port):
            raise ValueError("an mllp destination needs host and port")
        if self.type == "fhir" and not (self.base_url or "").startswith(("http://", "https://")):
            raise ValueError("a fhir destination needs base_url (http:// or https://)")
        return self


class Route(_Strict):
    name: Name
    sources: list[str] = Field(min_length=1, description='source system names, or "*"')
    message_types: list[str] = Field(default_factory=lambda: ["*"], description='e.g. "ORU^R01", or "*"')
    to: list[Name] = Field(min_length=1)


class Referral(_Strict):
    """Orders referred to one laboratory: matched by code or by ServiceRequest.performer."""
    laboratory: Name = Field(description="the laboratory system (role lis) the orders go to")
    codes: list[str] = Field(default_factory=list, description='analysis codes (NLK/LOINC), or "*"')
    performers: list[str] = Field(default_factory=list,
                                  description='ServiceRequest.performer as "system|value" or a reference')
    destination: Name | None = Field(None, description="mllp destination pushed OML^O21; unset = held for pull")


class ResultDelivery(_Strict):
    """Where results for an ordering system's orders go (its destination)."""
    system: Name
    destination: Name


class OrdersSection(_Strict):
    poc_codes: list[str] = Field(default_factory=list, description="analyses done at the point of care")
    referrals: list[Referral] = Field(default_factory=list)
    result_delivery: list[ResultDelivery] = Field(default_factory=list)


class Config(_Strict):
    gateway: GatewaySection = GatewaySection()
    http: HttpSection = HttpSection()
    database: DatabaseSection = DatabaseSection()
    validation: ValidationSection = ValidationSection()
    console: ConsoleSection = ConsoleSection()
    retention: RetentionSection = RetentionSection()
    alerts: AlertsSection = AlertsSection()
    systems: list[System] = Field(min_length=1)
    listeners: list[Listener] = Field(default_factory=list)
    destinations: list[Destination] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    orders: OrdersSection = OrdersSection()
    instruments: list[Instrument] = Field(default_factory=list)
    operators: list[Operator] = Field(default_factory=list)
    qc_targets: list[QcTarget] = Field(default_factory=list)
    instrument_settings: InstrumentSettings = InstrumentSettings()

    @model_validator(mode="after")
    def _check_references(self):
        _unique("systems", self.systems)
        _unique("listeners", self.listeners)
        _unique("destinations", self.destinations)
        _unique("routes", self.routes)
        systems = {s.name for s in self.systems}
        dests = {d.name for d in self.destinations}
        for i, sysc in enumerate(self.systems):   # enhanced acknowledgement mode
            if sysc.ack_mode == "enhanced" and not sysc.ack_destination:
                raise ValueError(f"systems[{i}].ack_destination: needed with ack_mode = 'enhanced'")
            if sysc.ack_destination:
                _known(f"systems[{i}].ack_destination", sysc.ack_destination,
                       {d.name for d in self.destinations if d.type == "mllp"}, "destinations (mllp)")
        for i, lst in enumerate(self.listeners):
            _known(f"listeners[{i}].system", lst.system, systems, "systems")
            for j, c in enumerate(lst.tls.clients if lst.tls else []):
                _known(f"listeners[{i}].tls.clients[{j}].system", c.system, systems, "systems")
        for i, d in enumerate(self.destinations):
            _known(f"destinations[{i}].system", d.system, systems, "systems")
        for i, c in enumerate(self.http.tls.clients if self.http.tls else []):
            _known(f"http.tls.clients[{i}].system", c.system, systems, "systems")
        for i, r in enumerate(self.routes):
            for j, s in enumerate(r.sources):
                if s != "*":
                    _known(f"routes[{i}].sources[{j}]", s, systems, "systems")
            for j, t in enumerate(r.to):
                _known(f"routes[{i}].to[{j}]", t, dests, "destinations")
        for i, ref in enumerate(self.orders.referrals):
            _known(f"orders.referrals[{i}].laboratory", ref.laboratory, systems, "systems")
            if ref.destination is not None:
                _known(f"orders.referrals[{i}].destination", ref.destination, dests, "destinations")
        for i, rd in enumerate(self.orders.result_delivery):
            _known(f"orders.result_delivery[{i}].system", rd.system, systems, "systems")
            _known(f"orders.result_delivery[{i}].destination", rd.destination, dests, "destinations")
        _check_instruments(self.instruments, self.operators, systems)
        return self

    def system(self, name: str) -> System:
        return next(s for s in self.systems if s.name == name)

    def destination(self, name: str) -> Destination:
        return next(d for d in self.destinations if d.name == name)


def _check_instruments(instruments, operators, systems: set[str]) -> None:
    serials: set[str] = set()
    for i, inst in enumerate(instruments):
        if inst.serial in serials:
            raise ValueError(f"instruments[{i}].serial: {inst.serial!r} is used twice")
        serials.add(inst.serial)
        _known(f"instruments[{i}].system", inst.system, systems, "systems")
    ids: set[str] = set()
    for i, op in enumerate(operators):
        if op.id in ids:
            raise ValueError(f"operators[{i}].id: {op.id!r} is used twice")
        ids.add(op.id)


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
