"""Fixtures for the HL7 v2 gateway tests: certificates made at test time."""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    """A CA with server and client certificates, and some that must be refused."""
    dir: Path
    ca: Path
    other_ca: Path

    def pair(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Testlab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, key, signing_key, *, ca=False, server=False, days=(-1, 1)):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days[0]))
         .not_valid_after(now + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                            critical=True)
    elif server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(signing_key, hashes.SHA256())


def _save(d: Path, name: str, cert, key=None) -> None:
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path = d / f"{name}.key"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    """CA; server 'localhost'; clients 'lis-1', 'lis-2', 'stranger' (valid, unmapped),
    'expired' (same CA, expired) and 'rogue' (another CA)."""
    d = tmp_path_factory.mktemp("hl7v2-pki")
    new = lambda: ec.generate_private_key(ec.SECP256R1())   # noqa: E731
    ca_key, other_key = new(), new()
    ca = _cert(_name("Labgate test CA"), _name("Labgate test CA"), ca_key, ca_key, ca=True)
    other = _cert(_name("Rogue CA"), _name("Rogue CA"), other_key, other_key, ca=True)
    _save(d, "ca", ca)
    _save(d, "other-ca", other)
    key = new()
    _save(d, "server", _cert(_name("localhost"), ca.subject, key, ca_key, server=True), key)
    for cn in ("lis-1", "lis-2", "stranger"):
        key = new()
        _save(d, cn, _cert(_name(cn), ca.subject, key, ca_key), key)
    key = new()
    _save(d, "expired", _cert(_name("lis-1"), ca.subject, key, ca_key, days=(-10, -1)), key)
    key = new()
    _save(d, "rogue", _cert(_name("lis-1"), other.subject, key, other_key), key)
    return Pki(d, d / "ca.pem", d / "other-ca.pem")
