"""`hearo run --lan`'s certificate: valid for the names a phone uses, kept, renewed when the
network changes, its key private."""

from __future__ import annotations

import datetime
import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from hearo.lan_tls import VALID_DAYS, lan_addresses, lan_certificate


def test_it_covers_loopback_localhost_and_the_lan_addresses(tmp_path: Path) -> None:
    made = lan_certificate(tmp_path, ["192.168.0.23"])
    assert {"localhost", "127.0.0.1", "192.168.0.23"} <= set(made.names)
    cert = x509.load_pem_x509_certificate(made.cert.read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=VALID_DAYS, minutes=5)
    assert VALID_DAYS <= 398  # what browsers accept for a server certificate
    assert made.fingerprint == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    # The pair loads as a server's: what uvicorn does with it.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(made.cert, made.key)


def test_the_key_is_readable_by_its_owner_alone(tmp_path: Path) -> None:
    made = lan_certificate(tmp_path, [])
    assert stat.S_IMODE(made.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.key.parent.stat().st_mode) == 0o700


def test_it_is_kept_while_it_covers_the_network_and_renewed_when_it_does_not(tmp_path: Path) -> None:
    first = lan_certificate(tmp_path, ["192.168.0.23"])
    assert lan_certificate(tmp_path, ["192.168.0.23"]).fingerprint == first.fingerprint
    assert lan_certificate(tmp_path, []).fingerprint == first.fingerprint  # fewer addresses: still covered
    moved = lan_certificate(tmp_path, ["10.0.0.7"])  # the home's router gave another address
    assert moved.fingerprint != first.fingerprint and "10.0.0.7" in moved.names


def test_lan_addresses_are_reachable_kinds_only() -> None:
    for address in lan_addresses():
        assert not address.startswith(("127.", "169.254.", "0."))
