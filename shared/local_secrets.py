"""Secrets the embedded default makes on first run, in place of fixed development values.

A fixed development secret is public (it is in this repository), so anyone could forge what
it signs. Instead, in ``development`` each secret that was not configured is generated once
with :func:`secrets.token_urlsafe` and kept in ``<data_dir>/secrets/<name>`` (folder 0700,
file 0600). Every process of one deployment shares the data folder (``hearo run`` starts them
all in one working directory), so the gateway, the worker and the drill agency read the same
value. Outside development nothing is generated: a missing secret is a configuration error,
and so is any value in :data:`KNOWN_DEVELOPMENT_VALUES`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

SECRETS_DIRNAME = "secrets"

# Values that were public defaults in earlier releases; production refuses them wherever a
# secret is read, so that an old .env cannot carry one into a deployment.
KNOWN_DEVELOPMENT_VALUES = frozenset(
    {
        "change-me-dev-only",
        "whsec_ZGV2LW9ubHktaGVhcm8td2ViaG9vay1zZWNyZXQ=",
    }
)


def local_secret(name: str, data_dir: Path) -> str:
    """The secret ``name`` under ``data_dir``, generated (32 random bytes) on first use.

    Safe when several processes ask at once: the file appears whole (written aside, then
    hard-linked into place) and the first one linked wins.
    """
    folder = data_dir / SECRETS_DIRNAME
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    if path.exists():
        return _read(path)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process linked its own first; everyone uses that one
    finally:
        os.unlink(temp)
    return _read(path)


def is_development_value(value: str) -> bool:
    """True for a secret that is public and must never protect a production deployment."""
    return value in KNOWN_DEVELOPMENT_VALUES


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty; delete it to have a new secret generated")
    return value
