"""MLLP over TLS through the real gateway: the client certificate names the
source system; unknown, expired and foreign certificates are refused; a
destination is reached over TLS with our client certificate."""
from __future__ import annotations

import asyncio
import ssl

import pytest
from support import MllpReceiver, base_config, field, frame, oru_r01

from gateway.config import ConfigError, parse


def _client_ctx(pki, name: str | None, trust=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trust or pki.ca))
    if name:
        cert, key = pki.pair(name)
        ctx.load_cert_chain(cert, key)
    return ctx


def _tls_config(pki) -> dict:
    cert, key = pki.pair("server")
    cfg = base_config()
    cfg["systems"] += [{"name": "lis-one", "roles": ["lis"]}, {"name": "lis-two", "roles": ["lis"]}]
    cfg["listeners"].append({
        "name": "mllps", "protocol": "mllp", "host": "127.0.0.1", "port": 0, "system": "poc",
        "tls": {"cert_file": str(cert), "key_file": str(key), "client_ca_file": str(pki.ca),
                "clients": [{"cn": "lis-1", "system": "lis-one"},
                            {"subject": "CN=lis-2,O=Testlab,C=NO", "system": "lis-two"}]}})
    return cfg


async def _exchange(port: int, ctx: ssl.SSLContext, msg: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="localhost")
    try:
        writer.write(frame(msg))
        await writer.drain()
        data = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 10)
        return data[1:-2]
    finally:
        writer.close()


async def _refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the connection is refused: at the handshake or closed before any ACK."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname="localhost")
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        writer.write(frame(oru_r01("REFUSED")))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        return data == b""
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        writer.close()


async def test_client_certificate_names_the_source_system(gateway_factory, pki):
    gw = await gateway_factory(_tls_config(pki))
    port = gw.listeners["mllps"].port
    ack1 = await _exchange(port, _client_ctx(pki, "lis-1"), oru_r01("TLS-1"))
    ack2 = await _exchange(port, _client_ctx(pki, "lis-2"), oru_r01("TLS-2"))
    assert field(ack1, "MSA", 1) == field(ack2, "MSA", 1) == "AA"
    rows = await gw.pool.fetch("SELECT control_id, source FROM message ORDER BY control_id")
    assert [(r["control_id"], r["source"]) for r in rows] == [("TLS-1", "lis-one"),
                                                               ("TLS-2", "lis-two")]


@pytest.mark.parametrize("cert, trust", [
    ("stranger", None),     # our CA, but not listed: identifies no system
    ("expired", None),      # our CA, expired
    ("rogue", None),        # CN lis-1, but signed by another CA
    (None, None),           # no client certificate at all
])
async def test_unknown_expired_foreign_or_missing_certificates_are_refused(
        gateway_factory, pki, cert, trust):
    gw = await gateway_factory(_tls_config(pki))
    assert await _refused(gw.listeners["mllps"].port, _client_ctx(pki, cert, trust))
    assert await gw.pool.fetchval("SELECT count(*) FROM message") == 0


def test_contexts_refuse_anything_below_tls_1_2(pki):
    from gateway.mllp_tls import destination_context, listener_context
    cfg = parse(_tls_config(pki))
    listener = listener_context(cfg.listeners[1].tls)
    assert listener.minimum_version == ssl.TLSVersion.TLSv1_2
    assert listener.verify_mode == ssl.CERT_REQUIRED
    dest = destination_context(parse({**base_config(dest_port=1), "destinations": [{
        "name": "d", "type": "mllp", "system": "lis", "host": "h", "port": 1,
        "tls": {"ca_file": str(pki.ca)}}], "routes": []}).destinations[0].tls)
    assert dest.minimum_version == ssl.TLSVersion.TLSv1_2
    assert dest.verify_mode == ssl.CERT_REQUIRED and dest.check_hostname


class TlsReceiver(MllpReceiver):
    """The test destination, behind TLS that requires our client certificate."""

    def __init__(self, ctx: ssl.SSLContext):
        super().__init__("AA")
        self.ctx = ctx
        self.peer_cns: list[str] = []

    async def start(self, port: int = 0) -> "TlsReceiver":
        async def conn(reader, writer):
            cert = writer.get_extra_info("peercert") or {}
            self.peer_cns += [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
            await self._conn(reader, writer)
        self.server = await asyncio.start_server(conn, "127.0.0.1", port, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


async def test_destination_over_tls_with_client_certificate(gateway_factory, pki):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    server_ctx.load_cert_chain(*pki.pair("server"))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    receiver = await TlsReceiver(server_ctx).start()
    try:
        cfg = base_config(dest_port=receiver.port)
        cert, key = pki.pair("lis-1")
        cfg["destinations"][0]["tls"] = {"ca_file": str(pki.ca), "cert_file": str(cert),
                                         "key_file": str(key), "server_hostname": "localhost"}
        gw = await gateway_factory(cfg)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.listeners["mllp-in"].port)
        writer.write(frame(oru_r01("TLS-OUT")))
        await writer.drain()
        await reader.readuntil(b"\x1c\r")
        writer.close()
        await receiver.wait_for(1)
        assert field(receiver.messages[0], "MSH", 9).startswith("ORU^R01")
        assert receiver.peer_cns == ["lis-1"]
        state = await _eventually_delivered(gw)
        assert state == "delivered"
    finally:
        await receiver.stop()


async def _eventually_delivered(gw, timeout: float = 10.0) -> str:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        state = await gw.pool.fetchval("SELECT state FROM outbox WHERE destination = 'lis-mllp'")
        if state == "delivered" or loop.time() > end:
            return state
        await asyncio.sleep(0.05)


async def test_destination_with_an_untrusted_server_certificate_is_not_delivered(
        gateway_factory, pki):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*pki.pair("server"))
    receiver = await TlsReceiver(server_ctx).start()
    try:
        cfg = base_config(dest_port=receiver.port, max_attempts=1)
        cfg["destinations"][0]["tls"] = {"ca_file": str(pki.other_ca)}
        gw = await gateway_factory(cfg)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.listeners["mllp-in"].port)
        writer.write(frame(oru_r01("TLS-BAD")))
        await writer.drain()
        await reader.readuntil(b"\x1c\r")
        writer.close()
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while await gw.pool.fetchval("SELECT state FROM outbox WHERE destination = 'lis-mllp'") \
                != "dead" and loop.time() < end:
            await asyncio.sleep(0.05)
        assert await gw.pool.fetchval(
            "SELECT state FROM outbox WHERE destination = 'lis-mllp'") == "dead"
        assert receiver.messages == []
    finally:
        await receiver.stop()


def test_tls_config_errors_name_the_key(pki):
    cfg = _tls_config(pki)
    cfg["listeners"][1]["tls"]["clients"][0]["system"] = "nobody"
    with pytest.raises(ConfigError, match=r"listeners\[1\]\.tls\.clients\[0\]\.system"):
        parse(cfg)
    cfg = _tls_config(pki)
    del cfg["listeners"][1]["tls"]["client_ca_file"]
    with pytest.raises(ConfigError, match="client_ca_file"):
        parse(cfg)
