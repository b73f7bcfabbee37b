"""Fixtures for the MLLP edge tests: servers on 127.0.0.1:0, raw sockets, TLS material."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.mllp import MllpServer, Peer

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


async def ack_echo(message: bytes, peer: Peer) -> bytes:
    """A handler that answers every message with ``ACK|`` + the message."""
    return b"ACK|" + message


async def _eventually(predicate, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true (server-side effects land asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def eventually():
    """``await eventually(lambda: ...)``: wait for a server-side effect to show."""
    return _eventually


class RawSender:
    """A bare TCP sender that writes exactly the bytes a test gives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 5.0) -> bytes:
        """Read one framed reply and return it unframed."""
        data = await asyncio.wait_for(self.reader.readuntil(FS + CR), timeout)
        return data[data.index(VT) + 1:-2]

    async def wait_closed_by_server(self, timeout: float = 5.0) -> bytes:
        """Read until the server closes; return whatever arrived before."""
        try:
            return await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def start_server():
    """``await start_server(handler=..., **kwargs)`` -> a started MllpServer, stopped after the test."""
    started: list[MllpServer] = []

    async def start(handler=ack_echo, **kwargs) -> MllpServer:
        server = MllpServer(handler, **kwargs)
        await server.start("127.0.0.1", 0)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=1.0)


@pytest.fixture
async def connect():
    """``await connect(port, ssl=None)`` -> a RawSender, closed after the test."""
    opened: list[RawSender] = []

    async def open_(port: int, **kwargs) -> RawSender:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, **kwargs)
        sender = RawSender(reader, writer)
        opened.append(sender)
        return sender

    yield open_
    for sender in opened:
        sender.close()


# ---- TLS material, made at test time --------------------------------------

@dataclass
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here

    def server_context(self, require_client_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
        return ctx

    def client_context(self, with_cert: bool = True, trust: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trust or self.ca))
        if with_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


def _name(**parts: str) -> x509.Name:
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in parts.items()])


def _cert(subject, issuer, key, signing_key, *, ca=False, san=None, usage=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    """A CA, a server cert for 127.0.0.1/localhost and a client cert, all fresh."""
    d = tmp_path_factory.mktemp("mllp-tls")
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(C="NO", O="Testlab", CN="Testlab test CA")
    ca = _cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    other_name = _name(CN="Unrelated CA")
    other = _cert(other_name, other_name, other_key, other_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(_name(C="NO", O="Testlab", CN="localhost"), ca_name, server_key, ca_key,
                   san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                   usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(_name(C="NO", O="Testlab", OU="POC", CN="analyser-1"), ca_name, client_key,
                   ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return TlsFiles(
        ca=_write(d / "ca.pem", cert=ca),
        server_cert=_write(d / "server.pem", cert=server),
        server_key=_write(d / "server.key", key=server_key),
        client_cert=_write(d / "client.pem", cert=client),
        client_key=_write(d / "client.key", key=client_key),
        other_ca=_write(d / "other-ca.pem", cert=other),
    )
