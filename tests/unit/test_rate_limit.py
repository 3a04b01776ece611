"""services.gateway.rate_limit: the token buckets, their memory bound, and the gateway's
refusal to start in production with open registration."""

from __future__ import annotations

import pytest

from services.gateway.rate_limit import KeyedLimiter, RateLimit, TokenBucket
from services.gateway.settings import GatewaySettings


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(capacity=2, per_second=4.0, tokens=2, updated=0.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    assert bucket.take_or_wait(0.0) == pytest.approx(0.25)  # the next token in a quarter second
    assert bucket.take(0.25) and not bucket.take(0.25)


def test_keys_have_their_own_buckets_and_refilled_ones_are_forgotten() -> None:
    limiter = KeyedLimiter(RateLimit(burst=1, per_minute=60))
    assert limiter.take_or_wait("a", 0.0) == 0.0
    assert limiter.take_or_wait("a", 0.0) == pytest.approx(1.0)
    assert limiter.take_or_wait("b", 0.0) == 0.0  # another key is not slowed by "a"
    assert len(limiter) == 2
    limiter.take_or_wait("c", 5.0)  # "a" and "b" are full again by now: nothing to remember
    assert len(limiter) == 1


def test_a_flood_of_keys_stays_within_max_keys() -> None:
    limiter = KeyedLimiter(RateLimit(burst=5, per_minute=1), max_keys=100)
    for n in range(10_000):
        limiter.take_or_wait(f"198.51.100.{n}", 0.0)
    assert len(limiter) <= 100


def test_production_refuses_to_start_with_open_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARO_ENVIRONMENT", "production")
    monkeypatch.setenv("HEARO_CLIPS_SECRET_KEY", "a-real-clip-signing-secret")
    monkeypatch.setenv("HEARO_INFERENCE_TOKEN", "a-real-inference-token")
    with pytest.raises(ValueError, match="HEARO_GATEWAY_ENROLMENT_KEY is required"):
        GatewaySettings()
    monkeypatch.setenv("HEARO_GATEWAY_ENROLMENT_KEY", "short")
    with pytest.raises(ValueError, match="at least 16 characters"):
        GatewaySettings()
    monkeypatch.setenv("HEARO_GATEWAY_ENROLMENT_KEY", "first-enrolment-key-0001, second-enrolment-key-002")
    assert GatewaySettings().enrolment_keys == ["first-enrolment-key-0001", "second-enrolment-key-002"]


def test_a_rate_limit_is_turned_off_with_null(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARO_GATEWAY_REST_PER_IP", "null")
    monkeypatch.setenv("HEARO_GATEWAY_REST_PER_DEVICE", '{"burst": 10, "per_minute": 30}')
    settings = GatewaySettings()
    assert settings.rest_per_ip is None and settings.rest_per_device == RateLimit(burst=10, per_minute=30)
