"""Test peers written independently of labgate's own adapters, so the
gateway is tested against something it did not build itself."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = (REPO_ROOT / ".." / "shared" / "corpus").resolve()
HL7V2_CORPUS = CORPUS / "hl7v2"


def require_corpus() -> Path:
    """The shared conformance corpus (../shared/corpus beside the checkout).

    Without it a test that needs it is skipped, with the reason, so a clone
    on its own runs the rest of the suite; where ``CI`` or
    ``LABGATE_REQUIRE_CORPUS`` is set it fails instead, because a
    conformance run that skips its corpus proves nothing."""
    if not CORPUS.is_dir():
        reason = f"the conformance corpus is not at {CORPUS} (../shared/corpus beside the checkout)"
        if os.environ.get("CI") or os.environ.get("LABGATE_REQUIRE_CORPUS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CORPUS


def hl7v2_corpus_file(kind: str, name: str) -> bytes:
    """One message of the HL7 v2 corpus (``kind`` valid or invalid)."""
    return (require_corpus() / "hl7v2" / kind / name).read_bytes()


def corpus_oru_r01_files() -> list[Path]:
    """Every ORU^R01 in the corpus, valid and invalid ([] without a corpus)."""
    return [p for kind in ("valid", "invalid") for p in sorted((HL7V2_CORPUS / kind).glob("*.hl7"))
            if b"|ORU^R01" in p.read_bytes()[:400]]

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


def frame(msg: bytes) -> bytes:
    return VT + msg + FS + CR


async def mllp_exchange(host: str, port: int, messages: list[bytes], timeout: float = 10) -> list[bytes]:
    """Send messages on one connection, one at a time; return the replies."""
    reader, writer = await asyncio.open_connection(host, port)
    replies = []
    try:
        for m in messages:
            writer.write(frame(m))
            await writer.drain()
            data = await asyncio.wait_for(reader.readuntil(FS + CR), timeout)
            replies.append(data[data.index(VT) + 1:-2])
    finally:
        writer.close()
    return replies


def field(message: bytes, segment: str, n: int) -> str:
    """Field n of the first segment named ``segment`` (MSH-aware numbering)."""
    for seg in message.replace(b"\n", b"\r").split(b"\r"):
        parts = seg.decode("utf-8", "replace").split("|")
        if parts[0] == segment:
            idx = n - 1 if segment == "MSH" else n
            return parts[idx] if idx < len(parts) else ""
    return ""


def segments(message: bytes, name: str) -> list[str]:
    return [s for s in message.decode("utf-8", "replace").split("\r") if s.startswith(name + "|")]


class MllpReceiver:
    """A destination system: records every message and answers with a
    configurable acknowledgement code (AA, AE, AR) or not at all."""

    def __init__(self, ack_code: str = "AA"):
        self.ack_code = ack_code
        self.messages: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None
        self.port: int | None = None
        self.arrived = asyncio.Event()

    async def start(self, port: int = 0) -> "MllpReceiver":
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _conn(self, reader, writer):
        try:
            while True:
                data = await reader.readuntil(FS + CR)
                msg = data[data.index(VT) + 1:-2]
                self.messages.append(msg)
                self.arrived.set()
                if self.ack_code is None:
                    continue
                ctrl = field(msg, "MSH", 10)
                ack = (f"MSH|^~\\&|RECEIVER||LABGATE||20250101000000||ACK^R01^ACK|R{len(self.messages)}|P|2.5.1\r"
                       f"MSA|{self.ack_code}|{ctrl}\r").encode()
                if self.ack_code != "AA":
                    ack += b"ERR||PID^1^3|207^Application internal error^HL70357|E||||Receiver says no\r"
                writer.write(frame(ack))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_for(self, n: int, timeout: float = 20.0) -> None:
        async def _wait():
            while len(self.messages) < n:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(_wait(), timeout)

    def control_ids(self) -> list[str]:
        return [field(m, "MSH", 10) for m in self.messages]


def oru_r01(control_id: str, *, fnr: str = "13116900216", value: str = "27",
            code: str = "NPU19748^P-C-reaktivt protein^NLK", unit: str = "mg/L",
            specimen: str = "BLDC^Blood capillary^HL70487") -> bytes:
    segs = [
        f"MSH|^~\\&|POCDM|LEGEVAKT^4210001^L|LABGW|KOMMUNE^4210000^L|20250314093200+0100||ORU^R01^ORU_R01|{control_id}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"PID|1||{fnr}^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR||Danser^Line||19691113|F",
        "OBR|1|ORD-1^EPJ|POC-1^POCDM|POCPANEL^POC-panel^L|||20250314092500|||||||||9144889^Koman^Magnar^^^^^^HPR&2.16.578.1.12.4.1.4.4&ISO||||||20250314093100|||F",
        f"OBX|1|NM|{code}||{value}|{unit}^{unit}^UCUM|<5|H|||F|||20250314092500||OP017^Hansen^Kari||AF2-000987^ACME-CRP|20250314093055",
        f"SPM|1|LID0004711||{specimen}|||||||||||||20250314092500",
    ]
    return ("\r".join(segs) + "\r").encode()


def potassium_oru(ctrl: str, value: str, collected_min: float, *, unit: str = "mmol/L",
                  operator: str = "OP017", fnr: str = "13116900216") -> bytes:
    """An ORU^R01 with one P-Kalium (NPU03230, an analysis with delta limits),
    collected ``collected_min`` minutes from now and analysed 10 minutes later."""
    from datetime import datetime, timedelta, timezone

    def ts(minutes: float) -> str:
        return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).strftime("%Y%m%d%H%M%S+0000")
    col, ana = ts(collected_min), ts(collected_min + 10)
    segs = [
        f"MSH|^~\\&|POCDM|LEGEVAKT|LABGW|KOMMUNE|{ts(0)}||ORU^R01^ORU_R01|{ctrl}|P|2.5.1",
        f"PID|1||{fnr}^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR||Danser^Line||19691113|F",
        f"OBR|1|ORD-{ctrl}^EPJ|POC-{ctrl}^POCDM|K^Kalium^L|||{col}||||||||||||||{ana}|||F",
        f"OBX|1|NM|NPU03230^P-Kalium^NLK||{value}|{unit}^{unit}^UCUM|||||F|||{col}||{operator}"
        f"||AF2-1|{ana}",
        f"SPM|1|S{ctrl}||SER^Serum^HL70487|||||||||||||{col}",
    ]
    return ("\r".join(segs) + "\r").encode()


def base_config(*, dest_port: int | None = None, ack_timeout: float = 2.0, max_attempts: int = 3,
                pull: bool = True) -> dict:
    cfg = {
        "gateway": {"name": "LABGATE", "facility": "TEST"},
        "http": {"host": "127.0.0.1", "port": 0},
        "systems": [
            {"name": "poc", "roles": ["instrument"]},
            {"name": "ehr", "roles": ["ehr"]},
            {"name": "other-ehr", "roles": ["ehr"]},
            {"name": "lis", "roles": ["lis"]},
        ],
        "listeners": [{"name": "mllp-in", "protocol": "mllp", "host": "127.0.0.1", "port": 0,
                       "system": "poc"}],
        "destinations": [],
        "routes": [],
    }
    to = []
    if dest_port is not None:
        cfg["destinations"].append({
            "name": "lis-mllp", "type": "mllp", "system": "lis", "host": "127.0.0.1",
            "port": dest_port, "max_attempts": max_attempts, "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2, "ack_timeout_s": ack_timeout})
        to.append("lis-mllp")
    if pull:
        cfg["destinations"].append({"name": "ehr-pull", "type": "pull", "system": "ehr"})
        to.append("ehr-pull")
    if to:
        cfg["routes"].append({"name": "results", "sources": ["poc"],
                              "message_types": ["ORU^R01"], "to": to})
    return cfg


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def to_toml(cfg: dict) -> str:
    """Write a config dict (tables, arrays of tables, scalars, lists) as TOML."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    out = []
    for key, section in cfg.items():
        if isinstance(section, dict):
            out.append(f"[{key}]")
            out += [f"{k} = {val(v)}" for k, v in section.items()]
        else:
            for item in section:
                out.append(f"[[{key}]]")
                out += [f"{k} = {val(v)}" for k, v in item.items()]
        out.append("")
    return "\n".join(out)


async def wait_for_port(port: int, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on {port}")
            await asyncio.sleep(0.1)
