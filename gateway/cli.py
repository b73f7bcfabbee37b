"""The ``labgate`` command: serve, demo, send, token, simulate."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from . import eventloop, heap
from . import logging as log_setup
from .config import PROCESS_ROLES, ConfigError, load

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO_ROOT / "examples" / "demo.toml"
DEMO_MESSAGE = REPO_ROOT / "examples" / "messages" / "oru-r01-poc-crp-hb.hl7"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args) or 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labgate", description=__doc__)
    sub = p.add_subparsers()
    s = sub.add_parser("serve", help="run the gateway with a configuration file")
    s.add_argument("--config", required=True)
    s.add_argument("--log-level", default="info")
    s.add_argument("--role", choices=PROCESS_ROLES, default="all",
                   help="all (default); intake: listeners, pipeline and HTTP API, no delivery; "
                        "delivery: only the delivery loops (docs/deployment.md)")
    s.add_argument("--http-port", type=int, metavar="PORT",
                   help="HTTP port instead of [http] port (e.g. a second process on one host)")
    s.set_defaults(func=_serve)
    d = sub.add_parser("demo", help="run the demo gateway on the embedded PostgreSQL")
    d.add_argument("--log-level", default="info")
    d.set_defaults(func=_demo)
    snd = sub.add_parser("send", help="send an HL7 v2 file over MLLP and print the ACK")
    snd.add_argument("file")
    snd.add_argument("--to", required=True, metavar="HOST:PORT")
    snd.add_argument("--timeout", type=float, default=30.0)
    snd.set_defaults(func=_send)
    t = sub.add_parser("token", help="create, revoke or list API tokens")
    t.add_argument("--config", required=True)
    tsub = t.add_subparsers(dest="action", required=True)
    tc = tsub.add_parser("create")
    tc.add_argument("system")
    tc.add_argument("--label", default="")
    tr = tsub.add_parser("revoke")
    tr.add_argument("id", type=int)
    tsub.add_parser("list")
    t.set_defaults(func=_token)
    u = sub.add_parser("user", help="console user accounts (there is no default account)")
    u.add_argument("--config", required=True)
    usub = u.add_subparsers(dest="action", required=True)
    uc = usub.add_parser("create", help="create a user; the password is prompted for, or read "
                         "from $LABGATE_USER_PASSWORD, or from stdin with --password-stdin")
    uc.add_argument("name")
    uc.add_argument("--role", action="append", required=True, choices=["admin", "auditor"])
    uc.add_argument("--password-stdin", action="store_true")
    u.set_defaults(func=_user)
    from .instruments.simulate_cli import add_parser as add_simulate
    add_simulate(sub)
    from .security.audit_export import add_parser as add_audit   # labgate audit export
    add_audit(sub)
    return p


def _load_or_exit(path) :
    try:
        return load(path)
    except ConfigError as e:
        print(f"labgate: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2)


def _serve(args) -> int:
    config = _load_or_exit(args.config)
    if args.http_port is not None:
        if not 0 <= args.http_port <= 65535:
            print(f"labgate: --http-port {args.http_port} is not a port", file=sys.stderr)
            return 2
        config = config.model_copy(update={
            "http": config.http.model_copy(update={"port": args.http_port})})
    log_setup.configure(args.log_level)
    try:
        eventloop.run(_run_until_signal(config, role=args.role), config.gateway.event_loop)
    except ConfigError as e:   # found at start-up, e.g. a bad rule table (file:line: reason)
        print(f"labgate: configuration error: {e}", file=sys.stderr)
        return 2
    return 0


async def _run_until_signal(config, on_started=None, role: str = "all") -> None:
    from .app import Gateway
    # Handlers first: a SIGTERM during start-up (a supervisor giving up, a
    # rolling restart) still stops the gateway cleanly once it has started.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gw = Gateway(config, role=role)
    await gw.start()
    log_setup.get("labgate.cli").info("gateway.heap_settled", permanent_objects=heap.settle())
    try:
        if on_started and not stop.is_set():
            await on_started(gw)
        await stop.wait()
    finally:
        await gw.stop()


def _demo(args) -> int:
    os.environ.setdefault("LABGATE_HOME", str(Path("./var").resolve()))
    config = _load_or_exit(DEMO_CONFIG)
    log_setup.configure(args.log_level)
    eventloop.run(_run_until_signal(config, on_started=_demo_banner), config.gateway.event_loop)
    return 0


async def _demo_banner(gw) -> None:
    from . import tokens
    from .embedded_pg import home
    creds = {}
    async with gw.pool.acquire() as conn:
        await tokens.revoke_labelled(conn, "demo")   # the last run's secrets stop working
        for system in gw.config.systems:
            _, token = await tokens.create(conn, system.name, label="demo")
            creds[system.name] = token
        creds["console"] = await _demo_admin(conn)   # one demo admin, fresh password
    path = home() / "demo-credentials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
    http = f"http://{gw.config.http.host}:{gw.http_port}"
    mllp = {lst.name: f"{lst.host}:{gw.listeners[lst.name].port}" for lst in gw.config.listeners
            if lst.protocol == "mllp"}
    instruments = "".join(   # ASTM / POCT1-A listeners
        f"\n  .venv/bin/labgate simulate {lst.protocol} --to {lst.host}:{gw.listeners[lst.name].port}"
        + (" --qc-first" if lst.protocol == "poct1a" else "")
        for lst in gw.config.listeners if lst.protocol != "mllp")
    ehr_pull = next(d for d in gw.config.destinations if d.type == "pull")
    print(f"""
labgate demo is running (Ctrl-C stops it).
  HTTP      {http}  (/healthz /readyz /metrics /fhir/metadata)
  MLLP      {', '.join(f'{n} on {a}' for n, a in mllp.items())}
  database  embedded PostgreSQL in {home() / 'pgdata'}
  tokens    {path} (fresh for this run)
  console   {http}/console/  user {creds["console"]["user"]}  password {creds["console"]["password"]}

Send an example lab result (CRP + Hb from a POC data manager):
  .venv/bin/labgate send {DEMO_MESSAGE.relative_to(REPO_ROOT)} --to {next(iter(mllp.values()))}
Then fetch it as the demo EHR would:
  curl -s -H "Authorization: Bearer {creds[ehr_pull.system]}" '{http}/fhir/Bundle?destination={ehr_pull.name}'
""" + (f"Simulate point-of-care instruments (docs/instruments.md):{instruments}\n" if instruments else ""),
          flush=True)


async def _demo_admin(conn) -> dict:
    """A demo console admin with a fresh random password (reset on every demo start)."""
    import secrets

    from . import users
    password = secrets.token_urlsafe(18)
    if not await users.set_password(conn, "console-admin", password):
        await users.create_user(conn, "console-admin", password, ["admin"])
    return {"user": "console-admin", "password": password}


def _user(args) -> int:
    config = _load_or_exit(args.config)
    password = os.environ.get("LABGATE_USER_PASSWORD")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        import getpass
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            print("labgate user: the passwords differ", file=sys.stderr)
            return 2
    return asyncio.run(_with_database(config, lambda conn: _user_create(conn, args, password)))


async def _user_create(conn, args, password: str) -> int:
    from . import users
    try:
        await users.create_user(conn, args.name, password, args.role)
    except users.UserError as e:
        print(f"labgate user: {e}", file=sys.stderr)
        return 2
    print(f"user {args.name} created with roles {', '.join(args.role)}")
    return 0


async def _with_database(config, work) -> int:
    from .oneshot_db import run_with_database
    return await run_with_database(config, work)


def _send(args) -> int:
    from adapters.mllp import send_once
    host, _, port = args.to.rpartition(":")
    data = Path(args.file).read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    try:
        ack = asyncio.run(send_once(host or "127.0.0.1", int(port), data, timeout=args.timeout))
    except Exception as e:  # shown to the person at the terminal
        print(f"labgate send: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(ack.decode("utf-8", "replace").replace("\r", "\n"))
    return 0 if b"MSA|AA" in ack or b"MSA|CA" in ack else 1


def _token(args) -> int:
    config = _load_or_exit(args.config)
    return asyncio.run(_token_async(config, args))


async def _token_async(config, args) -> int:
    from .oneshot_db import run_with_database
    return await run_with_database(config, lambda conn: _token_action(conn, config, args))


async def _token_action(conn, config, args) -> int:
    from . import tokens
    if args.action == "create":
        if args.system not in {s.name for s in config.systems}:
            print(f"labgate token: no system named {args.system!r} in the configuration",
                  file=sys.stderr)
            return 2
        tid, token = await tokens.create(conn, args.system, args.label)
        print(f"token {tid} for {args.system}: {token}")
        print("Store it now: only its hash is kept.")
    elif args.action == "revoke":
        ok = await tokens.revoke(conn, args.id)
        print("revoked" if ok else "no such live token")
        return 0 if ok else 1
    else:
        for t in await tokens.list_tokens(conn):
            state = "revoked" if t["revoked_at"] else "live"
            print(f"{t['id']:>5}  {t['system']:<24} {state:<8} {t['created_at']:%Y-%m-%d %H:%M}  {t['label']}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
