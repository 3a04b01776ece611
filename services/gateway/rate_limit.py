"""Token buckets: the gateway's one way of bounding how often something may happen.

* :class:`TokenBucket`: one bucket (a session's control messages, its ``scores`` messages).
* :class:`KeyedLimiter`: a bucket per key (a client address, a device token), forgotten once
  it has refilled, so memory follows the keys active in the last minutes, within ``max_keys``.
* :class:`RequestLimits` with the FastAPI dependencies :func:`limit_rest`,
  :func:`limit_registration` and :func:`limit_household_join`: the REST API's limits per
  client address and per device token (``GatewaySettings.rest_per_ip``, ``rest_per_device``,
  ``registration_per_ip``, ``household_join_per_ip``). Over a
  limit the answer is 429 with ``Retry-After`` and the API's error body
  ``{"detail": {"code": "rate_limited", "message": ...}}``.

Why our own: the ``limits`` package offers fixed and moving windows but no token bucket, and a
bucket is a few lines that the sessions already needed. Limits are per gateway process, in
memory: a deployment of N gateways behind a balancer allows up to N times each limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from pydantic import BaseModel, Field

from services.gateway.auth import hash_token
from services.gateway.openapi import ApiError

# Beyond this many keys held at once, the longest unused are forgotten first (a flood of
# addresses or made-up tokens cannot grow memory without bound).
MAX_KEYS = 100_000


class RateLimit(BaseModel):
    """A token bucket's shape: ``burst`` at once, then ``per_minute`` on average."""

    burst: int = Field(ge=1)
    per_minute: float = Field(gt=0.0)

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclass
class TokenBucket:
    """``capacity`` events at once, refilled at ``per_second``; times from one monotonic clock."""

    capacity: float
    per_second: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        return self.take_or_wait(now) == 0.0

    def take_or_wait(self, now: float) -> float:
        """Spend a token and return 0.0, or return the seconds until one is there."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second

    def full_at(self) -> float:
        """When the bucket will be full again (it is then the same as a new one)."""
        return self.updated + (self.capacity - self.tokens) / self.per_second


class KeyedLimiter:
    """A :class:`TokenBucket` of one :class:`RateLimit` per key."""

    def __init__(self, limit: RateLimit, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._buckets)

    def take_or_wait(self, key: str, now: float) -> float:
        """Spend one of ``key``'s tokens (0.0), or the seconds until it has one."""
        self._forget_full(now)
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.limit.burst, self.limit.per_second, self.limit.burst, now)
        self._buckets[key] = bucket
        return bucket.take_or_wait(now)

    def _forget_full(self, now: float) -> None:
        # Least recently used first: each is either refilled (nothing to remember) or there
        # are too many; the first that is neither ends the sweep (amortised O(1) per call).
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if bucket.full_at() > now and len(self._buckets) < self.max_keys:
                return
            del self._buckets[key]


class RequestLimits:
    """The REST API's limits; ``None`` for a limit turns it off."""

    def __init__(
        self,
        per_ip: RateLimit | None,
        per_device: RateLimit | None,
        registration_per_ip: RateLimit | None,
        household_join_per_ip: RateLimit | None = None,
    ) -> None:
        self.per_ip = KeyedLimiter(per_ip) if per_ip else None
        self.per_device = KeyedLimiter(per_device) if per_device else None
        self.registration_per_ip = KeyedLimiter(registration_per_ip) if registration_per_ip else None
        self.household_join_per_ip = KeyedLimiter(household_join_per_ip) if household_join_per_ip else None

    def check_rest(self, request: Request) -> None:
        """Raise 429 when the request's address or its device token is over its limit."""
        now = time.monotonic()
        if self.per_ip is not None:
            _refuse_if_waiting(self.per_ip.take_or_wait(client_address(request), now), "this address")
        token = bearer_token(request)
        if self.per_device is not None and token:
            _refuse_if_waiting(self.per_device.take_or_wait(hash_token(token), now), "this device")

    def check_registration(self, request: Request) -> None:
        """Raise 429 when the request's address has registered too many devices lately."""
        if self.registration_per_ip is not None:
            wait = self.registration_per_ip.take_or_wait(client_address(request), time.monotonic())
            _refuse_if_waiting(wait, "this address", what="registrations")

    def check_household_join(self, request: Request) -> None:
        """Raise 429 when the request's address has tried too many join codes lately."""
        if self.household_join_per_ip is not None:
            wait = self.household_join_per_ip.take_or_wait(client_address(request), time.monotonic())
            _refuse_if_waiting(wait, "this address", what="household join attempts")


def client_address(request: Request) -> str:
    """The client's address as the server sees it (behind a proxy, run uvicorn with
    ``--proxy-headers --forwarded-allow-ips`` so that it is the client's, not the proxy's)."""
    return request.client.host if request.client is not None else "unknown"


def bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _refuse_if_waiting(wait_s: float, whom: str, what: str = "requests") -> None:
    if wait_s <= 0.0:
        return
    retry_after = max(1, math.ceil(wait_s))
    raise HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail={"code": "rate_limited", "message": f"too many {what} from {whom}; retry in {retry_after} s"},
        headers={"Retry-After": str(retry_after)},
    )


def _limits(request: Request) -> RequestLimits:
    limits: RequestLimits = request.app.state.request_limits
    return limits


async def limit_rest(request: Request) -> None:
    """Dependency of every REST route the gateway serves (``create_app`` adds it)."""
    _limits(request).check_rest(request)


async def limit_registration(request: Request) -> None:
    """Dependency of ``POST /v1/devices``."""
    _limits(request).check_registration(request)


async def limit_household_join(request: Request) -> None:
    """Dependency of ``POST /v1/households/join``."""
    _limits(request).check_household_join(request)


RATE_LIMITED_RESPONSE = {
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": ApiError,
        "description": "Too many requests from this address or device; retry after `Retry-After` seconds. "
        'Body: `{"detail": {"code": "rate_limited", "message": "..."}}`.',
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    }
}
"""The 429 in the OpenAPI description of the routes these limits guard."""
