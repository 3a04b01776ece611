"""hearo bench load's reading of the servers: Prometheus samples diffed and summarised, /proc."""

from __future__ import annotations

import os

import pytest

from hearo.load_bench import server_usage as usage


def histogram(name: str, buckets: dict[str, float], total: float) -> usage.Samples:
    samples: usage.Samples = {(f"{name}_bucket", (("le", le),)): count for le, count in buckets.items()}
    samples[(f"{name}_count", ())] = buckets["+Inf"]
    samples[(f"{name}_sum", ())] = total
    return samples


def test_a_run_is_the_difference_of_two_scrapes() -> None:
    before = {("hearo_gateway_dropped_windows_total", (("reason", "behind"),)): 2.0}
    after = {
        ("hearo_gateway_dropped_windows_total", (("reason", "behind"),)): 5.0,
        ("hearo_gateway_dropped_windows_total", (("reason", "inference_unavailable"),)): 1.0,
    }
    run = usage.diff(before, after)
    assert usage.total(run, usage.GATEWAY_DROPPED) == 4.0
    assert usage.by_label(run, usage.GATEWAY_DROPPED, "reason") == {"behind": 3.0, "inference_unavailable": 1.0}


def test_histogram_mean_and_quantile() -> None:
    run = histogram("wait", {"0.01": 50.0, "0.1": 90.0, "1.0": 100.0, "+Inf": 100.0}, total=4.0)
    assert usage.histogram_mean(run, "wait") == pytest.approx(0.04)
    assert usage.histogram_quantile(run, "wait", 0.5) == pytest.approx(0.01)
    assert usage.histogram_quantile(run, "wait", 0.99) == pytest.approx(0.1 + 0.9 * 0.9)
    assert usage.histogram_quantile({}, "wait", 0.99) is None and usage.histogram_mean({}, "wait") is None


def test_this_process_can_be_sampled_from_proc() -> None:
    sample = usage.sample_process(os.getpid())
    assert sample is not None and sample.cpu_s > 0 and sample.rss_bytes > 0
    assert usage.sample_process(None) is None
