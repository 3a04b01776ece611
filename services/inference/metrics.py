"""Prometheus metrics of one inference app, on a registry of its own (served at /metrics).

A registry per app rather than the process-global one, so several apps (tests, a benchmark)
can live in one process without duplicate-metric errors.
"""

from __future__ import annotations

import enum

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class InferenceMetrics:
    """The batcher's and the WebSocket endpoint's instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batch_windows = Histogram(
            "hearo_inference_batch_windows",
            "Windows per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.queue_wait_seconds = Histogram(
            "hearo_inference_queue_wait_seconds",
            "Time a request waited in the queue before its batch ran.",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.compute_seconds = Histogram(
            "hearo_inference_compute_seconds",
            "Model time per batch.",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        # By reason (batcher.ShedReason): client_quota, queue_full (refused at arrival), shed
        # (queued, then dropped for a lighter connection). Each such request was answered
        # ``overloaded``, so no window goes unanswered.
        self.overloaded_total = Counter(
            "hearo_inference_overloaded",
            "Requests not served for want of room, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.shed_windows_total = Counter(
            "hearo_inference_shed_windows",
            "Windows not served for want of room, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.unauthorized_total = Counter(
            "hearo_inference_unauthorized",
            "WebSocket upgrades refused for a missing or wrong token.",
            registry=self.registry,
        )
        self.queue_windows = Gauge(
            "hearo_inference_queue_windows",
            "Windows waiting for a batch.",
            registry=self.registry,
        )
        self.bad_requests_total = Counter(
            "hearo_inference_bad_requests",
            "Binary frames refused as malformed.",
            registry=self.registry,
        )
        self.connections = Gauge(
            "hearo_inference_connections",
            "Open gateway connections.",
            registry=self.registry,
        )
        # What the batcher forms (services/inference/batch_tuning.py: chosen at startup).
        self.batch_target = Gauge(
            "hearo_inference_batch_target",
            "Windows a batch is formed up to.",
            registry=self.registry,
        )
        self.batch_max_wait_seconds = Gauge(
            "hearo_inference_batch_max_wait_seconds",
            "Longest a queued window waits for a batch to fill.",
            registry=self.registry,
        )

    def count_shed(self, reason: enum.Enum, windows: int) -> None:
        """One request of ``windows`` windows not served, for ``reason`` (its value is the label)."""
        self.overloaded_total.labels(reason.value).inc()
        self.shed_windows_total.labels(reason.value).inc(windows)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
