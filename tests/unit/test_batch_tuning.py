"""Choosing the batch target and wait from a measured throughput curve
(services/inference/batch_tuning.py)."""

from __future__ import annotations

import pytest

from services.inference.batch_tuning import BatchTiming, batch_sizes, choose


def curve(per_call_s: float, per_window_s: float, sizes: list[int]) -> list[BatchTiming]:
    return [BatchTiming(n, per_call_s + n * per_window_s) for n in sizes]


def test_sizes_double_up_to_the_ceiling() -> None:
    assert batch_sizes(1) == [1]
    assert batch_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert batch_sizes(24) == [1, 2, 4, 8, 16, 24]


def test_a_cpu_like_curve_stops_at_its_knee_and_may_wait_the_configured_bound() -> None:
    # The 2-core VM's default model: flat past 8 (windows/s 272, 342, 438, 502, 345, 403).
    measured = [BatchTiming(1, 1 / 272), BatchTiming(2, 2 / 342), BatchTiming(4, 4 / 438),
                BatchTiming(8, 8 / 502), BatchTiming(16, 16 / 345), BatchTiming(32, 32 / 403)]  # fmt: skip
    plan = choose(measured, max_wait_s=0.008)
    assert plan.target == 8
    assert plan.max_wait_s == 0.008  # the bound; the batcher waits only while arrivals can fill 8
    assert plan.describe()["measured"][8] == 502.0


def test_a_gpu_like_curve_uses_the_whole_ceiling() -> None:
    # A large fixed cost per call, a tiny one per window: throughput grows to the end.
    plan = choose(curve(0.004, 0.00002, batch_sizes(64)), max_wait_s=0.05)
    assert plan.target == 64
    assert plan.max_wait_s == 0.05


def test_a_model_without_a_fixed_cost_is_not_batched_and_never_waits() -> None:
    plan = choose(curve(0.0, 0.001, batch_sizes(32)), max_wait_s=0.008)
    assert plan.target == 1
    assert plan.max_wait_s == 0.0


def test_nothing_measured_is_an_error() -> None:
    with pytest.raises(ValueError):
        choose([], max_wait_s=0.01)
