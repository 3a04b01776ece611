"""A certificate for `hearo run --lan`: the web app on a phone or tablet in the same home.

Browsers give a page the microphone only in a secure context: ``http://127.0.0.1`` on the
machine itself, or ``https://`` from anywhere else. A home has no domain name and no
certificate authority, so the embedded system makes its own certificate once, self-signed,
for the names and addresses the phone will use (``localhost``, the machine's name, its loopback
and LAN addresses), and keeps it beside the other generated secrets
(``<data_dir>/secrets/tls/``, key 0600). The browser warns once; the owner compares the
fingerprint the banner prints with the one the browser shows and accepts it.

Production puts TLS in front of the gateway (the proxy or the Ingress, docs/operations.md).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.local_secrets import SECRETS_DIRNAME

# Browsers refuse server certificates valid for longer than 398 days.
VALID_DAYS = 397
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class LanCertificate:
    cert: Path
    key: Path
    names: tuple[str, ...]  # DNS names and IP addresses it is valid for
    fingerprint: str  # SHA-256, colon-separated hex, as browsers show it


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses that a phone on the same network can reach:
    the address of the default route's interface (a UDP socket "connected" to a documentation
    address sends nothing) and those the host name resolves to."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet leaves
            found.append(probe.getsockname()[0])
        except OSError:
            pass  # no route at all: only loopback
    try:
        found += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    usable = []
    for address in found:
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_unspecified or ip.is_link_local) and address not in usable:
            usable.append(address)
    return usable


def lan_certificate(data_dir: Path, addresses: list[str]) -> LanCertificate:
    """The certificate for ``localhost``, this host's name, 127.0.0.1 and ``addresses``: the
    one kept under ``data_dir`` when it covers them and is not about to expire, else a new one."""
    names = tuple(dict.fromkeys(["localhost", socket.gethostname(), "127.0.0.1", *addresses]))
    folder = data_dir / SECRETS_DIRNAME / "tls"
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        kept = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if set(names) <= set(_names(kept)) and _remaining(kept) > datetime.timedelta(days=RENEW_BEFORE_DAYS):
            return LanCertificate(cert_path, key_path, _names(kept), _fingerprint(kept))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, names)
    # The key appears with its final mode: never readable by others, not even for a moment.
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return LanCertificate(cert_path, key_path, names, _fingerprint(cert))


def _self_signed(key: ec.EllipticCurvePrivateKey, names: tuple[str, ...]) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Hear-o on {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.UTC)
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        alternatives = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(value) for value in alternatives.get_values_for_type(x509.DNSName)) + tuple(
        str(value) for value in alternatives.get_values_for_type(x509.IPAddress)
    )


def _remaining(cert: x509.Certificate) -> datetime.timedelta:
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()
