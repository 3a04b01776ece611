"""Prometheus metrics of an alerting worker, served on ``HEARO_ALERTING_METRICS_PORT``.

Two kinds, by where the truth lives:

* **the database's**, read every ``metrics_interval_s`` by :meth:`AlertingMetrics.run`:
  ``hearo_alerting_incidents{state}`` and ``hearo_alerting_oldest_overdue_pending_seconds``
  (how long past its deadline the oldest still-pending incident is: 0 when none is). Every
  worker exports the same values, so dashboards and alerts take ``max`` over the workers;
  one live worker is enough to see a stuck queue.
* **this worker's**, counted where its deliver task ends (:meth:`AlertingMetrics.observe_delivery`):
  ``hearo_alerting_delivery_attempts_total{table,outcome}``,
  ``hearo_alerting_dispatch_retries_total``, ``hearo_alerting_fallbacks_total`` (agency
  reports delivered through a fallback channel), ``hearo_alerting_dispatch_delay_seconds``
  (the incident's deadline to the agency's 2xx, per agency report) and
  ``hearo_alerting_ops_alerts_total{event}`` (:class:`MeteredOpsAlerter`). Summed over workers.

Every name is listed in docs/operations.md; the alert rules are deploy/prometheus/alerts.yml.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy import func, select

from services.alerting.delivery import AttemptOutcome
from services.alerting.dispatch import TABLES, OpsAlerter
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import DispatchOutbox, Incident
from shared.incident_state import IncidentState

log = logging.getLogger(__name__)

_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class AlertingMetrics:
    """One worker's instruments, on a registry of its own (several workers may share a test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.incidents = Gauge(
            "hearo_alerting_incidents", "Incidents by state (from the database).", ["state"], registry=self.registry
        )
        self.oldest_overdue_pending_seconds = Gauge(
            "hearo_alerting_oldest_overdue_pending_seconds",
            "Seconds the oldest pending incident is past its deadline (0: none is).",
            registry=self.registry,
        )
        self.attempts = Counter(
            "hearo_alerting_delivery_attempts",
            "Deliver task runs by outbox (agency, contact) and outcome.",
            ["table", "outcome"],
            registry=self.registry,
        )
        self.dispatch_retries = Counter(
            "hearo_alerting_dispatch_retries", "Agency report attempts that will be retried.", registry=self.registry
        )
        self.fallbacks = Counter(
            "hearo_alerting_fallbacks",
            "Agency reports delivered through a fallback channel (the first one gave up).",
            registry=self.registry,
        )
        self.dispatch_delay_seconds = Histogram(
            "hearo_alerting_dispatch_delay_seconds",
            "From an incident's deadline to an agency's acceptance of its report.",
            buckets=_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.ops_alerts = Counter(
            "hearo_alerting_ops_alerts", "Alerts raised to operations, by event.", ["event"], registry=self.registry
        )
        self.without_broker = Counter(
            "hearo_alerting_deliveries_without_broker",
            "Deliveries a worker ran itself because the broker refused their messages, by outbox.",
            ["table"],
            registry=self.registry,
        )
        for state in IncidentState:
            self.incidents.labels(state.value).set(0)
        for table in TABLES:
            self.without_broker.labels(table)
            for outcome in AttemptOutcome:
                self.attempts.labels(table, outcome.value)
        self.ops_alerts.labels("delivery_exhausted")

    def serve(self, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 (scraped from inside the cluster)
        """Serve ``/metrics`` (any path, in fact) on ``port`` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

    async def observe_delivery(self, db: Database, table: str, row_id: uuid.UUID, outcome: AttemptOutcome) -> None:
        """Count one deliver task's ``outcome``; for an agency report sent, its delay and channel."""
        self.attempts.labels(table, outcome.value).inc()
        if TABLES.get(table) is not DispatchOutbox:
            return
        if outcome is AttemptOutcome.RETRY:
            self.dispatch_retries.inc()
        if outcome is not AttemptOutcome.SENT:
            return
        async with db.session() as session:
            row = (
                await session.execute(
                    select(DispatchOutbox.position, DispatchOutbox.sent_at, Incident.deadline_at)
                    .join(Incident, Incident.id == DispatchOutbox.incident_id)
                    .where(DispatchOutbox.id == row_id)
                )
            ).one_or_none()
        if row is None or row.sent_at is None:
            return
        self.dispatch_delay_seconds.observe(max(0.0, (row.sent_at - row.deadline_at).total_seconds()))
        if row.position > 0:
            self.fallbacks.inc()

    async def refresh(self, db: Database) -> None:
        """Read the incident counts and the oldest overdue pending incident from ``db``."""
        async with db.session() as session:
            counts = dict((await session.execute(select(Incident.state, func.count()).group_by(Incident.state))).all())
            now: datetime = await session.scalar(select(db_now()))
            oldest: datetime | None = await session.scalar(
                select(Incident.deadline_at)
                .where(Incident.state == IncidentState.PENDING, Incident.deadline_at < db_now())
                .order_by(Incident.deadline_at)
                .limit(1)
            )
        for state in IncidentState:
            self.incidents.labels(state.value).set(counts.get(state, 0))
        self.oldest_overdue_pending_seconds.set(0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))

    async def run(self, db: Database, stop: asyncio.Event, interval_s: float) -> None:
        """:meth:`refresh` every ``interval_s`` until ``stop`` is set; a failed read is logged and retried."""
        while not stop.is_set():
            try:
                await self.refresh(db)
            except Exception as error:  # a database blip must not end the metrics, nor the worker
                log.warning("metrics refresh failed: %s", type(error).__name__)
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass


class MeteredOpsAlerter(OpsAlerter):
    """The :class:`OpsAlerter`, counting each alert in ``hearo_alerting_ops_alerts_total{event}``."""

    def __init__(self, metrics: AlertingMetrics, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def alert(self, event: str, detail: dict[str, Any]) -> None:
        self._metrics.ops_alerts.labels(event).inc()
        await super().alert(event, detail)
