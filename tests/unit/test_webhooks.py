"""Standard Webhooks signing and verification, and the sender's classification of answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest

from services.alerting.webhooks import (
    WebhookSender,
    WebhookVerificationError,
    new_secret,
    secret_key,
    signature,
    verify,
    webhook_headers,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"type":"incident.reported","data":{"incident_id":"x"}}'


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example from the Standard Webhooks specification's reference libraries.
    body = b'{"test": 2432232314}'
    assert (
        signature(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_signature_is_hmac_sha256_over_id_timestamp_body() -> None:
    expected = hmac.new(secret_key(SECRET), b"abc.1700000000." + BODY, hashlib.sha256).digest()
    assert signature(SECRET, "abc", 1700000000, BODY) == "v1," + base64.b64encode(expected).decode()


def test_round_trip_returns_the_webhook_id() -> None:
    headers = webhook_headers([SECRET], "delivery-1", BODY, timestamp=1700000000)
    assert verify([SECRET], headers, BODY, now=1700000010) == "delivery-1"


def test_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = webhook_headers([new, old], "d", BODY, timestamp=1700000000)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify([old], headers, BODY, now=1700000000) == "d"
    assert verify([new], headers, BODY, now=1700000000) == "d"
    with pytest.raises(WebhookVerificationError):
        verify([new_secret()], headers, BODY, now=1700000000)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "other"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "1700000001"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "soon"}, b),
    ],
)
def test_tampering_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    headers, body = tamper(webhook_headers([SECRET], "d", BODY, timestamp=1700000000), BODY)
    with pytest.raises(WebhookVerificationError):
        verify([SECRET], headers, body, now=1700000000)


def test_stale_timestamp_is_refused() -> None:
    headers = webhook_headers([SECRET], "d", BODY, timestamp=1700000000)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify([SECRET], headers, BODY, now=1700000000 + 301)


def test_secret_format_is_checked() -> None:
    with pytest.raises(ValueError):
        secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    with pytest.raises(ValueError):
        secret_key("whsec_!!!")
    assert len(secret_key(new_secret())) == 32


async def test_sender_keeps_the_id_and_resigns_each_attempt() -> None:
    seen: list[httpx.Request] = []
    answers = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = WebhookSender(client, timeout_s=1)
        first = await sender.send("http://agency/hook", [SECRET], "row-1", BODY)
        second = await sender.send("http://agency/hook", [SECRET], "row-1", BODY)
    assert (first.ok, first.retryable, first.status) == (False, True, 503)
    assert (second.ok, second.status) == (True, 200)
    assert [r.headers["webhook-id"] for r in seen] == ["row-1", "row-1"]
    for request in seen:
        assert verify([SECRET], request.headers, request.content) == "row-1"
        assert json.loads(request.content)["type"] == "incident.reported"


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (429, True), (408, True), (400, False), (401, False), (404, False)]
)
async def test_failures_are_classified(status: int, retryable: bool) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(status))) as client:
        result = await WebhookSender(client, timeout_s=1).send("http://a/h", [SECRET], "x", BODY)
    assert not result.ok and result.retryable is retryable and result.status == status


async def test_transport_errors_are_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow agency", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await WebhookSender(client, timeout_s=1).send("http://a/h", [SECRET], "x", BODY)
    assert not result.ok and result.retryable and result.status is None
    assert "ReadTimeout" in result.detail
