"""MLLP over TLS with client certificates; CA and certs are made at test time."""
from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from adapters.mllp import MllpClient, MllpConnectionError, MllpError, Peer, send_once, subject_string

# The client certificate conftest makes: C=NO, O=Testlab, OU=POC, CN=analyser-1.
CLIENT_SUBJECT = "CN=analyser-1,OU=POC,O=Testlab,C=NO"


async def test_tls_end_to_end_with_client_certificate(start_server, tls_files):
    seen: list[Peer] = []
    authorized: list[Peer] = []

    async def handler(message, peer):
        seen.append(peer)
        return b"ACK|" + message

    def authorize(peer: Peer) -> str | None:
        authorized.append(peer)
        return "analyser-1" if peer.tls_subject == CLIENT_SUBJECT else None

    server = await start_server(handler, ssl=tls_files.server_context(), authorize=authorize)
    client = MllpClient("127.0.0.1", server.port, ssl=tls_files.client_context())
    assert await client.send(b"over tls") == b"ACK|over tls"
    assert await client.send(b"again") == b"ACK|again"
    await client.close()
    # authorize already saw the certificate, before any message
    assert authorized[0].tls_subject == CLIENT_SUBJECT and authorized[0].cert
    peer = seen[0]
    assert peer.tls_subject == CLIENT_SUBJECT
    assert peer.system == "analyser-1"
    assert dict(x[0] for x in peer.cert["subject"])["commonName"] == "analyser-1"
    assert server.stats()["connections_refused"] == 0


async def test_client_without_certificate_is_refused(start_server, tls_files, eventually):
    handled = []

    async def handler(message, peer):
        handled.append(message)
        return b"ACK"

    server = await start_server(handler, ssl=tls_files.server_context(require_client_cert=True))
    with capture_logs() as logs:
        client = MllpClient("127.0.0.1", server.port, ssl=tls_files.client_context(with_cert=False),
                            ack_timeout=5.0)
        with pytest.raises(MllpConnectionError):
            await client.send(b"no cert")
        await client.close()
        await eventually(lambda: server.stats()["connections_refused"] == 1)
    assert handled == []
    assert server.stats()["connections_total"] == 0
    [event] = [e for e in logs if e["event"] == "mllp.connection_refused"]
    assert event["reason"] == "tls_handshake_failed"


async def test_authorize_refuses_an_unknown_certificate_subject(start_server, tls_files, eventually):
    server = await start_server(ssl=tls_files.server_context(), authorize=lambda peer: None)
    client = MllpClient("127.0.0.1", server.port, ssl=tls_files.client_context())
    with pytest.raises(MllpConnectionError):
        await client.send(b"x")
    await client.close()
    await eventually(lambda: server.stats()["connections_refused"] == 1)


async def test_client_refuses_a_server_it_does_not_trust(start_server, tls_files):
    server = await start_server(ssl=tls_files.server_context(require_client_cert=False))
    with pytest.raises(MllpError):
        await send_once("127.0.0.1", server.port, b"x", timeout=5.0,
                        ssl=tls_files.client_context(trust=tls_files.other_ca))


async def test_server_hostname_is_checked(start_server, tls_files):
    server = await start_server(ssl=tls_files.server_context(require_client_cert=False))
    ok = MllpClient("127.0.0.1", server.port, ssl=tls_files.client_context(),
                    server_hostname="localhost")
    assert await ok.send(b"m") == b"ACK|m"
    await ok.close()
    wrong = MllpClient("127.0.0.1", server.port, ssl=tls_files.client_context(),
                       server_hostname="lis.example.org")
    with pytest.raises(MllpConnectionError):
        await wrong.send(b"m")


async def test_plain_client_against_tls_server_is_refused(start_server, tls_files, connect,
                                                          eventually):
    server = await start_server(ssl=tls_files.server_context())
    sender = await connect(server.port)
    await sender.send(b"\x0bMSH|plain\x1c\r")
    await sender.wait_closed_by_server()
    await eventually(lambda: server.stats()["connections_refused"] == 1)


def test_subject_string_escapes_and_orders():
    cert = {"subject": ((("countryName", "NO"),), (("organizationName", "Lab, Nord"),),
                        (("commonName", "#1"), ("userId", "a+b")))}
    assert subject_string(cert) == "CN=\\#1+UID=a\\+b,O=Lab\\, Nord,C=NO"
    assert subject_string(None) is None and subject_string({}) is None
