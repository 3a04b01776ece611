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


def test_a_box_of_several_gateways_reads_as_one() -> None:
    first = histogram("wait", {"0.1": 1.0, "+Inf": 2.0}, total=0.5)
    second = histogram("wait", {"0.1": 3.0, "+Inf": 3.0}, total=0.1)
    both = usage.merged([first, second])
    assert usage.total(both, "wait_count") == 5.0 and usage.histogram_mean(both, "wait") == pytest.approx(0.12)
    one = usage.sample_process(os.getpid())
    twice = usage.sample_processes([os.getpid(), os.getpid()])
    assert one is not None and twice is not None and twice.rss_bytes > 1.5 * one.rss_bytes
    assert usage.sample_processes([os.getpid(), None]) is None


def test_homes_are_spread_over_the_gateways_round_robin() -> None:
    from hearo.load_bench.measure import Target

    target = Target("http://127.0.0.1:8000", "http://127.0.0.1:8001", ("https://127.0.0.1:9000/",))
    assert [target.stream_url_for(i) for i in range(3)] == [
        "ws://127.0.0.1:8000/v1/stream", "wss://127.0.0.1:9000/v1/stream", "ws://127.0.0.1:8000/v1/stream"
    ]
    assert Target("http://a:1", "http://b:2").gateway_urls == ("http://a:1",)
