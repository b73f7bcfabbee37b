"""Processes the benchmark and the chaos scenarios start and measure: the
embedded PostgreSQL, ``labgate serve`` subprocesses, helper servers, and
CPU/RSS accounting for a process tree."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = Path(sys.executable).parent / "py-spy"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process {proc.pid} exited ({proc.returncode}) before listening on {port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port}")
            time.sleep(0.05)


class Postgres:
    """The embedded PostgreSQL (pgserver) in ``data_dir``."""

    def __init__(self, data_dir: Path):
        sys.path.insert(0, str(ROOT))
        from gateway.embedded_pg import EmbeddedPostgres
        self.data_dir = Path(data_dir)
        self._emb = EmbeddedPostgres(self.data_dir)
        self.url = ""

    def start(self) -> str:
        self.url = self._emb.start()
        return self.url

    def stop(self) -> None:
        server = self._emb._server
        user = getattr(server, "system_user", None)
        self._emb.stop()
        # pgserver only stops the postmaster it started itself; after
        # restart() that process is gone and the new one would be left running.
        if (self.data_dir / "postmaster.pid").exists():
            import subprocess as sp

            from pgserver._commands import pg_ctl
            try:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user, timeout=60)
            except sp.CalledProcessError:
                pass   # already stopped

    def postmaster(self) -> psutil.Process:
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart`` on the running server (same options, same socket);
        ``fast`` rolls back open transactions and drops every connection."""
        from pgserver._commands import pg_ctl
        user = getattr(self._emb._server, "system_user", None)
        pg_ctl(["-w", "-m", mode, "restart"], pgdata=self.data_dir, user=user, timeout=120)

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return with_database(self.url, name)


def gateway_toml(mllp_port: int, http_port: int, sink_port: int, *, batch: int = 200,
                 ordered: bool = True, pull: bool = True, backoff_max_s: float = 1.0) -> str:
    """The benchmark/chaos configuration: one MLLP listener (system ``poc``),
    results routed to an MLLP destination (the sink, system ``lis``) and,
    with ``pull``, a pull destination for the EHR."""
    pull_dest = """
[[destinations]]
name = "ehr-pull"
type = "pull"
system = "ehr"
""" if pull else ""
    to = '["lis-mllp", "ehr-pull"]' if pull else '["lis-mllp"]'
    # FHIR orders for the REST benchmark (CRP at the point of care), where the
    # measured checkout has the [orders] section.
    config_py = (gateway_root() / "gateway" / "config.py").read_text()
    orders = '\n[orders]\npoc_codes = ["NPU19748"]\n' if "class OrdersSection" in config_py else ""
    # the per-token HTTP rate limit would measure the limiter, not the path
    unlimited = "requests_per_minute = 0" if "requests_per_minute" in config_py else ""
    return f"""
[gateway]
name = "LABGATE"
facility = "BENCH"

[http]
host = "127.0.0.1"
port = {http_port}
{unlimited}

[database]
pool_min = 4
pool_max = 12
writers = 2
group_commit_max = 256

[[systems]]
name = "poc"
roles = ["instrument"]

[[systems]]
name = "ehr"
roles = ["ehr"]

[[systems]]
name = "lis"
roles = ["lis"]

[[listeners]]
name = "mllp-in"
protocol = "mllp"
host = "127.0.0.1"
port = {mllp_port}
system = "poc"

[[destinations]]
name = "lis-mllp"
type = "mllp"
system = "lis"
host = "127.0.0.1"
port = {sink_port}
ack_timeout_s = 5.0
backoff_initial_s = 0.05
backoff_max_s = {backoff_max_s}
max_attempts = 1000
ordered = {"true" if ordered else "false"}
batch = {batch}
{pull_dest}
[[routes]]
name = "results"
sources = ["poc"]
message_types = ["ORU^R01"]
to = {to}
{orders}"""


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def gateway_root() -> Path:
    """The checkout whose gateway is measured: this one, or
    ``$LABGATE_BENCH_ROOT`` (e.g. a ``git archive`` snapshot of a commit)."""
    return Path(os.environ.get("LABGATE_BENCH_ROOT") or ROOT)


def start_gateway(config_path: Path, db_url: str, log_path: Path, *,
                  profile_to: Path | None = None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """``labgate serve`` as a subprocess (optionally under py-spy record);
    ``extra``: more ``serve`` arguments (e.g. ``--role delivery``)."""
    env = dict(os.environ, LABGATE_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_path),
           "--log-level", "warning", *extra]
    if profile_to is not None:
        cmd = [str(PY_SPY), "record", "--format", "raw", "--rate", "250", "--nonblocking",
               "-o", str(profile_to), "--"] + cmd
    return subprocess.Popen(cmd, cwd=gateway_root(), env=env, stdout=open(log_path, "ab"),
                            stderr=subprocess.STDOUT)


def gateway_process(proc: subprocess.Popen) -> psutil.Process:
    """The Python process serving (the child when py-spy wraps it)."""
    p = psutil.Process(proc.pid)
    if "py-spy" in " ".join(p.cmdline()):
        for _ in range(100):
            kids = p.children()
            if kids:
                return kids[0]
            time.sleep(0.05)
    return p


def start_helper(*args: str) -> subprocess.Popen:
    """A helper server (``python -m bench.servers …`` or node) that prints
    ``listening PORT`` once ready."""
    proc = subprocess.Popen(list(args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening"):
        proc.kill()
        raise RuntimeError(f"{args} did not start: {line}{proc.stdout.read()}")
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU of these processes and all their descendants."""
    total = 0.0
    seen = set()
    for p in procs:
        try:
            tree = [p] + p.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for q in tree:
            if q.pid in seen:
                continue
            seen.add(q.pid)
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def main_thread_cpu(p: psutil.Process) -> float:
    """User + system CPU seconds of a process's main thread (where asyncio's
    event loop runs; its thread id is the process id)."""
    try:
        for t in p.threads():
            if t.id == p.pid:
                return t.user_time + t.system_time
    except psutil.NoSuchProcess:
        pass
    return 0.0


def machine_busy() -> float:
    """CPU seconds the whole machine has spent not idle, over all cores."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def postgres_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL process on the machine (the
    embedded server runs as its own user, pgserver, when started by root)."""
    total = 0.0
    for p in psutil.process_iter(["name", "username"]):
        if p.info["name"] == "postgres" or p.info["username"] == "pgserver":
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def peak_rss_mb(p: psutil.Process) -> float:
    """High-water resident set size (VmHWM) of one process, in MB."""
    for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_drained(db_url: str, timeout: float = 300.0) -> float:
    """Seconds until no outbox row is pending any more."""
    conn = await asyncpg.connect(db_url)
    t0 = time.perf_counter()
    try:
        while await conn.fetchval("SELECT count(*) FROM outbox WHERE state = 'pending'"):
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("outbox did not drain")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return time.perf_counter() - t0


def machine() -> dict:
    """What the numbers were measured on."""
    import platform
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "node": node,
        "kernel": platform.release(),
        "writeback": page_cache_writeback(),
    }


def page_cache_writeback() -> str:
    """When the kernel writes dirty pages back: PostgreSQL's WAL fsyncs wait
    behind a large writeback, which decides the ACK latency's tail
    (docs/deployment.md, host settings)."""
    vm = Path("/proc/sys/vm")
    try:
        nbytes = int((vm / "dirty_background_bytes").read_text())
        expire = int((vm / "dirty_expire_centisecs").read_text()) / 100
        ratio = (vm / "dirty_background_ratio").read_text().strip()
    except OSError:
        return "unknown"
    start = f"{nbytes // 2**20} MB" if nbytes else f"{ratio} % of memory"
    return f"background writeback from {start} dirty or after {expire:g} s"
