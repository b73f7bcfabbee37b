"""MLLP over TLS: SSL contexts for listeners and destinations, and which
source system a listener's client certificate names.

TLS 1.2 is the floor in both directions. A listener that lists ``clients``
identifies the source system by the peer's verified certificate (full RFC
4514 subject first, then the common name alone); a verified certificate that
is not listed is refused. Without ``clients`` every verified peer is the
listener's ``system``. Private key files must be owner-only
(gateway.security.secretfiles).
"""
from __future__ import annotations

import ssl

from .config import DestinationTls, ListenerTls
from .security.secretfiles import check_private

from .security.tls import CIPHERS as _CIPHERS


def listener_context(tls: ListenerTls, what: str = "listener") -> ssl.SSLContext:
    """The server context of an MLLP listener."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    key = check_private(tls.key_file, what=f"{what}.tls.key_file")
    ctx.load_cert_chain(tls.cert_file, str(key))
    if tls.client_ca_file:
        ctx.load_verify_locations(cafile=tls.client_ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else (
        ssl.CERT_OPTIONAL if tls.client_ca_file else ssl.CERT_NONE)
    return ctx


def destination_context(tls: DestinationTls, what: str = "destination") -> ssl.SSLContext:
    """The client context of an MLLP destination (server certificate always verified)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    _harden(ctx)
    if tls.cert_file:
        key = check_private(tls.key_file, what=f"{what}.tls.key_file")
        ctx.load_cert_chain(tls.cert_file, str(key))
    return ctx


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(_CIPHERS)


def common_name(cert: dict | None) -> str | None:
    """The (most specific) CN of a ``getpeercert()`` subject."""
    for rdn in reversed((cert or {}).get("subject") or ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class CertificateSystems:
    """Certificate subject / CN → source system, for one listener."""

    def __init__(self, tls: ListenerTls | None):
        clients = tls.clients if tls else []
        self._by_subject = {c.subject: c.system for c in clients if c.subject}
        self._by_cn = {c.cn: c.system for c in clients if c.cn}

    def __bool__(self) -> bool:
        return bool(self._by_subject or self._by_cn)

    def system_for(self, subject: str | None, cert: dict | None) -> str | None:
        """The system of a verified certificate; None if it names none."""
        if not cert:
            return None
        if subject and subject in self._by_subject:
            return self._by_subject[subject]
        return self._by_cn.get(common_name(cert) or "")
