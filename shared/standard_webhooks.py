"""Standard Webhooks (standardwebhooks.com) signing and verifying, for every service.

Every signed request carries three headers::

    webhook-id:        the message's id; the same for every retry of one message
    webhook-timestamp: Unix seconds when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"> [v1,<...> ...]

Secrets are written ``whsec_<base64 of the key bytes>``. Rotation: the sender signs with
every secret it holds (space-separated signatures) and the receiver accepts a request when
any signature matches any secret it holds, so either side can change first.

The alerting worker signs its reports with these (:mod:`services.alerting.webhooks`, which
re-exports them); the gateway verifies an agency's outcome callback with them
(:mod:`shared.outcome_callback`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Literal

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# Receivers refuse timestamps further than this from their clock (replay protection).
DEFAULT_TOLERANCE_S = 5 * 60

VerificationFault = Literal["missing", "stale", "signature"]


class WebhookVerificationError(Exception):
    """The request is not a valid signed webhook. ``fault`` says which rule it broke:
    ``missing`` (a header absent or malformed), ``stale`` (the timestamp outside the
    tolerance) or ``signature`` (no signature matches)."""

    def __init__(self, message: str, fault: VerificationFault = "signature") -> None:
        super().__init__(message)
        self.fault: VerificationFault = fault


def secret_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error as error:
        raise ValueError(f"a webhook secret is whsec_ followed by base64: {error}") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode()}"


def webhook_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt, signed with every secret given."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign a webhook")
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(signature(s, msg_id, ts, body) for s in secrets),
        "content-type": "application/json",
    }


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a received webhook; returns its ``webhook-id``.

    ``headers`` must look names up case-insensitively (Starlette's and httpx's do).
    Raises :class:`WebhookVerificationError` unless one signature matches one of
    ``secrets`` and the timestamp is within ``tolerance_s`` of ``now``.
    """
    msg_id = headers.get("webhook-id")
    raw_ts = headers.get("webhook-timestamp")
    raw_sigs = headers.get("webhook-signature")
    if not msg_id or not raw_ts or not raw_sigs:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature", "missing")
    try:
        ts = int(raw_ts)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer", "missing") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance", "stale")
    expected = [signature(s, msg_id, ts, body) for s in secrets]
    for candidate in raw_sigs.split():
        if any(hmac.compare_digest(candidate, e) for e in expected):
            return msg_id
    raise WebhookVerificationError("no signature matches")
