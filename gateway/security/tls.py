"""HTTPS for the API: a TLS 1.2+ server context and client certificate → system.

The server context verifies client certificates against ``client_ca_file``;
an unknown, wrong-CA or expired certificate fails the handshake. A verified
certificate names a system only if it is listed in ``[[http.tls.clients]]``
(by RFC 4514 subject or SHA-256 fingerprint); a verified but unlisted one
authenticates nobody (the request gets 401).
"""
from __future__ import annotations

import hashlib
import os
import ssl

from adapters.mllp.peer import subject_string

from .secretfiles import check_private

KEY_PASSWORD_ENV = "LABGATE_HTTP_TLS_KEY_PASSWORD"
# TLS 1.2 suites with forward secrecy and AEAD only (HTTP and MLLP alike).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS"
_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def server_context(tls) -> ssl.SSLContext:
    """An SSLContext for ``config.http.tls`` (TLS 1.2 minimum, no compression/renegotiation)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers(CIPHERS)
    key = check_private(tls.key_file, what="http.tls.key_file")
    ctx.load_cert_chain(tls.cert_file, str(key), password=os.environ.get(KEY_PASSWORD_ENV) or None)
    ctx.verify_mode = _VERIFY[tls.client_cert]
    if tls.client_ca_file:
        ctx.load_verify_locations(cafile=tls.client_ca_file)
    return ctx


def normalise_fingerprint(fp: str) -> str:
    return fp.replace(":", "").replace(" ", "").lower()


class ClientCertMap:
    """Which system a verified client certificate belongs to."""

    def __init__(self, clients):
        self._by_subject = {c.subject: c.system for c in clients if c.subject}
        self._by_fp = {normalise_fingerprint(c.fingerprint_sha256): c.system
                       for c in clients if c.fingerprint_sha256}

    def __bool__(self) -> bool:
        return bool(self._by_subject or self._by_fp)

    def system_for(self, transport) -> tuple[str | None, str | None]:
        """(system, fingerprint) of the peer certificate on ``transport``; (None, None) without one."""
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        if sslobj is None:
            return None, None
        cert = sslobj.getpeercert()          # {} / None unless verified
        der = sslobj.getpeercert(binary_form=True)
        if not cert or not der:
            return None, None
        fp = hashlib.sha256(der).hexdigest()
        system = self._by_fp.get(fp) or self._by_subject.get(subject_string(cert))
        return system, fp
