"""Who is on the other end of an MLLP connection."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Short attribute names of RFC 4514 for the names ssl.getpeercert() spells out.
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_ESCAPE = {",", "+", '"', "\\", "<", ">", ";", "="}


@dataclass
class Peer:
    """The remote end of a connection, as the handler and ``authorize`` see it.

    ``system`` is the identity ``authorize`` bound the connection to.
    ``cert`` is ``ssl.SSLSocket.getpeercert()`` of a verified client
    certificate, and ``tls_subject`` its subject as an RFC 4514 string
    (most specific first, e.g. ``"CN=analyser-1,O=Lab,C=NO"``).
    """

    host: str
    port: int
    system: str | None = None
    tls_subject: str | None = None
    cert: dict | None = None


def subject_string(cert: dict[str, Any] | None) -> str | None:
    """Render the subject of a ``getpeercert()`` dict as an RFC 4514 string."""
    if not cert or not cert.get("subject"):
        return None
    parts = []
    for rdn in reversed(cert["subject"]):
        parts.append("+".join(f"{_SHORT_NAMES.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(parts)


def _escape(value: str) -> str:
    out = "".join("\\" + ch if ch in _ESCAPE else ch for ch in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and len(out) > 1:
        out = out[:-1] + "\\ "
    return out
