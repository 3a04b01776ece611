"""Signed webhooks following the Standard Webhooks specification (standardwebhooks.com).

Every request carries three headers::

    webhook-id:        the idempotency key; the same for every retry of one delivery
    webhook-timestamp: Unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"> [v1,<...> ...]

Secrets are written ``whsec_<base64 of the key bytes>``. Rotation: the sender signs with
every configured secret (space-separated signatures) and the receiver accepts a request
when any signature matches any secret it holds, so either side can change first.
Receivers (``hearo agency``) call :func:`verify` and de-duplicate on ``webhook-id``.
"""

from __future__ import annotations

import base64
import secrets as secrets_module
from collections.abc import Sequence

import httpx

from services.alerting.delivery import DeliveryResult
from shared.settings import ServiceSettings
from shared.standard_webhooks import (
    DEFAULT_TOLERANCE_S,
    SECRET_PREFIX,
    SIGNATURE_VERSION,
    WebhookVerificationError,
    secret_key,
    signature,
    verify,
    webhook_headers,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "LOCAL_WEBHOOK_SECRET",
    "SECRET_PREFIX",
    "SIGNATURE_VERSION",
    "WebhookSender",
    "WebhookVerificationError",
    "local_webhook_secret",
    "new_secret",
    "secret_key",
    "signature",
    "verify",
    "webhook_headers",
]

# The primitives (secrets, signing, verifying) are shared with the gateway, which verifies
# the agencies' outcome callbacks the same way: shared/standard_webhooks.py.
# The generated development secret (``<data_dir>/secrets/webhook``): the alerting worker signs
# with it and ``hearo agency`` verifies with it, so ``hearo run`` works end to end.
LOCAL_WEBHOOK_SECRET = "webhook"


def new_secret(nbytes: int = 32) -> str:
    """A fresh random secret in ``whsec_`` form."""
    return SECRET_PREFIX + base64.b64encode(secrets_module.token_bytes(nbytes)).decode()


def local_webhook_secret(settings: ServiceSettings) -> str:
    """The development webhook secret in ``whsec_`` form: the key is the generated secret's
    bytes, so every process reading the same data folder derives the same one. Raises
    ValueError outside development (:meth:`ServiceSettings.local_secret`)."""
    return SECRET_PREFIX + base64.b64encode(settings.local_secret(LOCAL_WEBHOOK_SECRET).encode()).decode()


class WebhookSender:
    """Posts signed webhooks through a shared ``httpx.AsyncClient``."""

    def __init__(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    async def send(self, url: str, secrets: Sequence[str], msg_id: str, body: bytes) -> DeliveryResult:
        """One attempt; never raises for what the network or the receiver does."""
        headers = webhook_headers(secrets, msg_id, body)
        try:
            response = await self.client.post(url, content=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as error:
            return DeliveryResult.from_error(error)
        return DeliveryResult.from_response(response)
