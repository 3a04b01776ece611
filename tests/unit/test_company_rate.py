"""The batcher's company rate: arrivals independent of the batcher count in full, a client that
waits for each answer not at all."""

from __future__ import annotations

import random

import pytest

from services.inference.company import HORIZON_S, MIN_BUSY_SHARE, CompanyRate


def simulate(rate: float, compute_s: float, seconds: float, seed: int = 0) -> CompanyRate:
    """Poisson arrivals at ``rate`` windows/s served one at a time, ``compute_s`` each."""
    company, rng = CompanyRate(), random.Random(seed)
    now, free_at = 0.0, 0.0
    while now < seconds:
        now += rng.expovariate(rate)
        if free_at <= now:
            company.busy(False, free_at)  # it went idle when the last one was done
        company.arrived(1, now)
        free_at = max(free_at, now) + compute_s
    return company


@pytest.mark.parametrize(("rate", "compute_s"), [(60.0, 0.006), (120.0, 0.004), (30.0, 0.012)])
def test_independent_arrivals_are_counted_at_their_whole_rate(rate: float, compute_s: float) -> None:
    # Only a share of them find the batcher busy; divided by the busy share, that is all of them.
    company = simulate(rate, compute_s, seconds=20 * HORIZON_S)
    assert company.busy_share(20 * HORIZON_S) > MIN_BUSY_SHARE
    assert company.rate(20 * HORIZON_S) == pytest.approx(rate, rel=0.3)


def test_a_client_that_waits_for_each_answer_is_no_company() -> None:
    company, now = CompanyRate(), 0.0
    for _ in range(500):
        company.arrived(1, now)  # always onto an idle batcher
        now += 0.006
        company.busy(False, now)  # answered; the next request follows
        now += 0.001
    assert company.busy_share(now) > 0.5  # busy most of the time, yet no company
    assert company.rate(now) == 0.0


def test_a_stray_overlap_on_a_quiet_service_is_not_a_crowd() -> None:
    company = CompanyRate()
    company.arrived(1, 0.0)
    company.arrived(1, 0.001)  # one overlap
    company.busy(False, 0.01)
    # One window over the horizon, over the floored share: well under one per 50 ms.
    assert company.rate(0.01) * 0.05 < 1.0
