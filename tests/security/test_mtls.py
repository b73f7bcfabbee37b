"""HTTPS with client certificates: a mapped certificate is a system; a wrong,
expired or unknown one is refused; TLS below 1.2 is refused; key files must
be owner-only."""
from __future__ import annotations

import asyncio
import os
import ssl

import aiohttp
import pytest

from sec_helpers import issue_tokens, security_config
from gateway.config import ConfigError, parse
from gateway.security.secretfiles import SecretFileError
from gateway.security.tls import server_context
from sec_pki import CA


@pytest.fixture
def pki(tmp_path):
    (tmp_path / "rogue").mkdir()
    ca, rogue = CA(tmp_path, "Kommune CA"), CA(tmp_path / "rogue", "Rogue CA")
    return {
        "ca": ca,
        "server": ca.issue("localhost", server=True),
        "ehr": ca.issue("ehr-client"),
        "unlisted": ca.issue("unlisted-client"),
        "expired": ca.issue("expired-ehr", expired=True),
        "rogue": rogue.issue("ehr-client"),       # same subject, wrong CA
    }


def tls_config(pki, client_cert="optional", **extra) -> dict:
    return security_config(tls={
        "cert_file": str(pki["server"].cert), "key_file": str(pki["server"].key),
        "client_ca_file": str(pki["ca"].path), "client_cert": client_cert,
        "clients": [{"system": "ehr", "subject": "CN=ehr-client,O=Testkommune,C=NO"},
                    {"system": "lis", "fingerprint_sha256": pki["expired"].fingerprint}],
        **extra})


def client_ctx(pki, who: str | None, *, maximum=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].path))
    if who:
        ctx.load_cert_chain(str(pki[who].cert), str(pki[who].key))
    if maximum:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
    return ctx


async def get(gw, ctx, path, headers=None):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"https://localhost:{gw.http_port}{path}", ssl=ctx, headers=headers) as r:
            return r.status, await r.read(), r.headers


async def test_mapped_client_certificate_is_the_system(gateway_factory, pki):
    gw = await gateway_factory(tls_config(pki))
    status, body, headers = await get(gw, client_ctx(pki, "ehr"), "/fhir/Bundle?destination=ehr-pull")
    assert status == 200, body
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    status, _, _ = await get(gw, client_ctx(pki, "ehr"), "/fhir/AuditEvent")
    assert status == 403                       # the certificate gives ehr's roles, no more


async def test_verified_but_unlisted_certificate_authenticates_nobody(gateway_factory, pki):
    gw = await gateway_factory(tls_config(pki))
    status, body, _ = await get(gw, client_ctx(pki, "unlisted"), "/fhir/Bundle?destination=ehr-pull")
    assert status == 401 and b"AUTH-MISSING" in body


@pytest.mark.parametrize("who", ["rogue", "expired"])
async def test_wrong_ca_or_expired_certificate_fails_the_handshake(gateway_factory, pki, who):
    gw = await gateway_factory(tls_config(pki))
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await get(gw, client_ctx(pki, who), "/fhir/Bundle?destination=ehr-pull")
    # The server is still fine for a good client afterwards.
    assert (await get(gw, client_ctx(pki, "ehr"), "/healthz"))[0] == 200


async def test_required_client_certificate_refuses_a_client_without_one(gateway_factory, pki):
    gw = await gateway_factory(tls_config(pki, client_cert="required"))
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await get(gw, client_ctx(pki, None), "/healthz")
    assert (await get(gw, client_ctx(pki, "ehr"), "/healthz"))[0] == 200


async def test_bearer_tokens_still_work_over_https_without_a_certificate(gateway_factory, pki):
    gw = await gateway_factory(tls_config(pki))
    token = (await issue_tokens(gw, ["lis"]))["lis"]
    status, _, _ = await get(gw, client_ctx(pki, None), "/fhir/Bundle?destination=lis-pull",
                             headers={"Authorization": f"Bearer {token}"})
    assert status == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
async def test_tls_below_1_2_is_refused(gateway_factory, pki, version):
    gw = await gateway_factory(tls_config(pki))
    ctx = client_ctx(pki, "ehr", maximum=getattr(ssl.TLSVersion, version))
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _, w = await asyncio.open_connection("127.0.0.1", gw.http_port, ssl=ctx, server_hostname="localhost")
        w.close()


def test_server_context_is_tls_1_2_or_later(pki):
    ctx = server_context(parse(tls_config(pki)).http.tls)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_OPTIONAL


def test_key_file_readable_by_others_is_refused(pki):
    os.chmod(pki["server"].key, 0o644)
    with pytest.raises(SecretFileError, match=r"http.tls.key_file .*0644.*chmod 600"):
        server_context(parse(tls_config(pki)).http.tls)


def test_config_errors_name_the_key(pki):
    cfg = tls_config(pki)
    cfg["http"]["tls"]["clients"][0]["system"] = "nobody"
    with pytest.raises(ConfigError, match=r"http.tls.clients\[0\].system: 'nobody' is not defined"):
        parse(cfg)
    cfg = tls_config(pki)
    cfg["http"]["tls"]["clients"][0] = {"system": "ehr"}
    with pytest.raises(ConfigError, match="subject or fingerprint_sha256"):
        parse(cfg)
    cfg = tls_config(pki)
    del cfg["http"]["tls"]["client_ca_file"]
    with pytest.raises(ConfigError, match="client_ca_file is needed"):
        parse(cfg)
