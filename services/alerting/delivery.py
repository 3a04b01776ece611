"""What one attempt at a delivery came to, whatever the channel.

Both adapters (:mod:`services.alerting.webhooks`, :mod:`services.alerting.sms`) speak HTTP
and classify the answer the same way:

* 2xx: delivered.
* 408, 425, 429, any 5xx, a timeout, a refused or reset connection: worth retrying, since
  the receiver may recover (the idempotency key makes the retry safe).
* any other 4xx: the receiver refuses this request as such (bad secret, unknown route);
  retrying the same bytes cannot help, so the channel gives up and the next one is tried.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httpx

_RETRYABLE_4XX = frozenset({408, 425, 429})


class AttemptOutcome(enum.StrEnum):
    """What one run of the deliver task did with its row (the task's result; the row's state
    is a :class:`~shared.incident_state.DeliveryState`)."""

    NOT_CLAIMABLE = "not_claimable"  # done already, or held by a live sender: a harmless duplicate
    SENT = "sent"
    RETRY = "retry"  # back to pending, due again after the backoff
    FAILED = "failed"  # this channel gave up; the next one, if any, is due now
    NOT_RECORDED = "not_recorded"  # sent, but the lease was lost before the outcome could be written

    @property
    def settles(self) -> bool:
        """The row reached a final state: its incident may now settle."""
        return self in (AttemptOutcome.SENT, AttemptOutcome.FAILED)


@dataclass(frozen=True)
class DeliveryResult:
    """``ok``: the receiver accepted it. Otherwise ``retryable`` says whether to try again."""

    ok: bool
    retryable: bool
    status: int | None
    detail: str

    @classmethod
    def from_response(cls, response: httpx.Response) -> DeliveryResult:
        code = response.status_code
        if 200 <= code < 300:
            return cls(True, False, code, "accepted")
        retryable = code >= 500 or code in _RETRYABLE_4XX
        return cls(False, retryable, code, f"HTTP {code}: {response.text[:200]}")

    @classmethod
    def from_error(cls, error: httpx.HTTPError) -> DeliveryResult:
        """A transport failure (timeout, connection): the request may or may not have landed."""
        return cls(False, True, None, f"{type(error).__name__}: {error}"[:300])
