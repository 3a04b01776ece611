"""Prometheus metrics of the gateway, served at ``GET /metrics``.

One gateway is one process, so the instruments live in one object per process,
:data:`GATEWAY_METRICS`, on a registry of its own (not prometheus_client's global one), and
the session code records into it with plain calls::

    GATEWAY_METRICS.windows_classified(len(results), latency_s)   # after a classify call
    GATEWAY_METRICS.windows_dropped(DropReason.BEHIND)             # a live window skipped
    GATEWAY_METRICS.detection("fire")                              # each detection sent

The open sessions are read, not counted: ``create_app`` hands the session registry to
:meth:`GatewayMetrics.watch_sessions` and the gauge asks it at every scrape, so a crashed
session cannot leave the gauge off by one. ``hearo_gateway_sessions`` is the gateway HPA's
signal (``k8s/base/gateway-hpa.yaml``); every name here is listed in docs/operations.md. The
event loop's tasks and the database pool's connections are read the same way
(:meth:`GatewayMetrics.watch_runtime`): what a leak would grow (``hearo bench soak``). The
loop's own lag is probed by a task (:meth:`GatewayMetrics.probe_loop_lag`): an overloaded
gateway shows there first, and ``hearo bench load`` reports it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Protocol

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.pool import Pool, QueuePool

from shared.spoken.phrases import load_phrases
from shared.taxonomy import CLASSES

# A window answered later than this after it was sent to inference is late: at the 0.5 s hop
# a stream's windows then queue up behind each other.
LATE_AFTER_S = 0.5
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The event loop's lag is probed by a timer this often (``probe_loop_lag``).
LOOP_PROBE_S = 0.25
# Why a household board post was lost (shared.household.board).
HOUSEHOLD_LOSS_REASONS = ("queue_full", "redis_error")


class DropReason(enum.StrEnum):
    """Why a window was never classified."""

    BEHIND = "behind"  # live audio fell behind real time: the oldest queued window was skipped
    # The classify call failed (no model service, a timeout, an overloaded one): never retried.
    INFERENCE_UNAVAILABLE = "inference_unavailable"


class SessionCount(Protocol):
    @property
    def active(self) -> int: ...


class GatewayMetrics:
    """The gateway's instruments; see the module docstring for who records what."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions = Gauge("hearo_gateway_sessions", "Streaming sessions open now.", registry=self.registry)
        self.asyncio_tasks = Gauge(
            "hearo_gateway_asyncio_tasks", "Tasks alive in the gateway's event loop.", registry=self.registry
        )
        self.db_connections = Gauge(
            "hearo_gateway_db_connections",
            "Connections the gateway's database pool holds open (in use and idle).",
            registry=self.registry,
        )
        self._windows = Counter(
            "hearo_gateway_windows", "Audio windows classified (rate: windows/s).", registry=self.registry
        )
        self._held = Counter(
            "hearo_gateway_held_windows",
            "Windows the novelty gate kept from the model (steady sound it had just called normal; "
            "they took the last judged window's scores).",
            registry=self.registry,
        )
        self._late = Counter(
            "hearo_gateway_late_windows",
            f"Windows whose scores came back more than {LATE_AFTER_S} s after they were sent.",
            registry=self.registry,
        )
        self._dropped = Counter(
            "hearo_gateway_dropped_windows", "Windows never classified, by reason.", ["reason"], registry=self.registry
        )
        self._latency = Histogram(
            "hearo_gateway_classify_seconds",
            "Round trip of one classify request to inference.",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._detections = Counter(
            "hearo_gateway_detections", "Detections sent to clients, by class.", ["class"], registry=self.registry
        )
        self._loop_lag = Histogram(
            "hearo_gateway_loop_lag_seconds",
            f"How late the event loop ran a timer due every {LOOP_PROBE_S} s: how long every session's "
            "next step can wait behind the loop's other work.",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._incident_open = Histogram(
            "hearo_gateway_incident_open_seconds",
            "From a detection to its incident recorded (the detection's message waits for it).",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._household_lost = Counter(
            "hearo_gateway_household_windows_lost",
            "Window summaries a household device's session could not post to the activity board, by reason.",
            ["reason"],
            registry=self.registry,
        )
        # Spoken words (services/gateway/session_spoken.py, docs/spoken.md).
        self._spoken_audio = Counter(
            "hearo_gateway_spoken_audio_seconds",
            "Session audio the speech gate looked at (heard) and passed to the keyword recognisers (passed).",
            ["stage"],
            registry=self.registry,
        )
        self._spoken_cpu = Counter(
            "hearo_gateway_spoken_cpu_seconds", "Keyword recogniser CPU time (thread time).", registry=self.registry
        )
        self._spoken_dropped = Counter(
            "hearo_gateway_spoken_dropped_seconds",
            "Live session audio the recognisers never heard: they fell behind and the oldest was dropped.",
            registry=self.registry,
        )
        self._spoken_phrases = Counter(
            "hearo_gateway_spoken_phrases", "Distress phrases confirmed, by class and language.", ["class", "language"],
            registry=self.registry,
        )
        # Every label exported at 0 from the start: a rate() over a series that appears only at
        # its first event misses that event, and an alert on it would not fire.
        for reason in DropReason:
            self._dropped.labels(reason.value)
        for emergency_class in CLASSES:
            if emergency_class.is_emergency:
                self._detections.labels(emergency_class.key)
        for loss in HOUSEHOLD_LOSS_REASONS:
            self._household_lost.labels(loss)
        for stage in ("heard", "passed"):
            self._spoken_audio.labels(stage)
        for class_key, language in sorted({(p.class_key, p.language) for p in load_phrases()}):
            self._spoken_phrases.labels(class_key, language)
        self.sessions.set_function(lambda: 0)

    def watch_sessions(self, sessions: SessionCount) -> None:
        """Report ``sessions.active`` as ``hearo_gateway_sessions`` at every scrape."""
        read: Callable[[], float] = lambda: float(sessions.active)  # noqa: E731
        self.sessions.set_function(read)

    def watch_runtime(self, loop: asyncio.AbstractEventLoop, pool: Pool) -> None:
        """Report ``loop``'s live tasks and ``pool``'s open connections at every scrape (the
        scrape runs on ``loop``, so its task set is read from its own thread)."""
        self.asyncio_tasks.set_function(lambda: float(len(asyncio.all_tasks(loop))))
        if isinstance(pool, QueuePool):  # the pool of PostgreSQL and of a SQLite file
            self.db_connections.set_function(lambda: float(pool.checkedin() + pool.checkedout()))

    def windows_classified(self, count: int, latency_s: float) -> None:
        """``count`` windows came back from one classify call that took ``latency_s``."""
        self._windows.inc(count)
        self._latency.observe(latency_s)
        if latency_s > LATE_AFTER_S:
            self._late.inc(count)

    def windows_held(self, count: int) -> None:
        """``count`` windows the novelty gate kept from the model."""
        self._held.inc(count)

    def windows_dropped(self, reason: DropReason, count: int = 1) -> None:
        """``count`` windows will never be classified, for ``reason``."""
        self._dropped.labels(reason.value).inc(count)

    def detection(self, class_key: str) -> None:
        """One detection of ``class_key`` sent to a client."""
        self._detections.labels(class_key).inc()

    def incident_opened(self, seconds: float) -> None:
        """A detection's incident took ``seconds`` to record (or to fail)."""
        self._incident_open.observe(seconds)

    async def probe_loop_lag(self) -> None:
        """Forever: sleep ``LOOP_PROBE_S`` and record how late the loop woke (run as a task)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LOOP_PROBE_S
            await asyncio.sleep(LOOP_PROBE_S)
            self._loop_lag.observe(max(0.0, loop.time() - due))

    def household_windows_lost(self, reason: str, count: int) -> None:
        """``count`` window summaries never reached the household board (``queue_full``, ``redis_error``)."""
        self._household_lost.labels(reason).inc(count)

    def spoken_listened(self, heard_s: float, passed_s: float, cpu_s: float) -> None:
        """A session's speech gate looked at ``heard_s`` of audio, passed ``passed_s`` of it on,
        and its recognisers took ``cpu_s`` of CPU."""
        self._spoken_audio.labels("heard").inc(max(heard_s, 0.0))
        self._spoken_audio.labels("passed").inc(max(passed_s, 0.0))
        self._spoken_cpu.inc(max(cpu_s, 0.0))

    def spoken_dropped(self, seconds: float) -> None:
        """``seconds`` of a live session's audio dropped before the recognisers heard it."""
        self._spoken_dropped.inc(seconds)

    def spoken_phrase(self, class_key: str, language: str) -> None:
        """One distress phrase confirmed."""
        self._spoken_phrases.labels(class_key, language).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


GATEWAY_METRICS = GatewayMetrics()

router = APIRouter(tags=["ops"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition. Not for the public: the proxy and the Ingress do not route it."""
    body, content_type = GATEWAY_METRICS.render()
    return Response(body, media_type=content_type)
