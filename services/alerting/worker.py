"""The alerting worker: a Celery worker whose tasks send outbox rows, plus the sweeper loop.

Start it with ``python -m services.alerting.worker`` (``hearo serve alerting``); run two or
more in production, on PostgreSQL and Redis. One process holds:

* a Celery consumer on the ``threads`` pool (sending is I/O), whose single task
  ``hearo.alerting.deliver(table, row_id)`` is ``acks_late`` and ``reject_on_worker_lost``
  and is idempotent: it claims the row with a lease before sending;
* an asyncio loop in its own thread (:class:`AlertingRuntime`) that owns the database
  engine, the HTTP client, the :class:`~services.alerting.sweeper.Sweeper` and the
  :class:`~services.alerting.retention.Retention` job (clips and personal data that have
  outlived their purpose) and the :class:`~services.alerting.anomaly_training.AnomalyKeeper`
  (away and alone modes: the devices' models trained, inactivity flagged); task threads hand
  their coroutine to it.

Broker: ``HEARO_ALERTING_BROKER_URL``. Unset, the embedded default is kombu's filesystem
transport under ``<data_dir>/broker`` (no server; messages are files). ``redis://...``
for production. Either way the broker only carries nudges: the database's outbox is the
queue of record, so a broker that loses messages (Redis restarted empty, a killed worker's
prefetched messages) delays a delivery by at most ``redrive_after_s``, never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import httpx
from celery import Celery

from services.alerting.anomaly_training import AnomalyKeeper
from services.alerting.dispatch import Dispatcher, RetryPolicy
from services.alerting.faults import FaultInjector
from services.alerting.metrics import AlertingMetrics, MeteredOpsAlerter
from services.alerting.report import ReportBuilder
from services.alerting.retention import Retention, RetentionPolicy
from services.alerting.routing import Router
from services.alerting.settings import AlertingSettings
from services.alerting.sms import SmsSender
from services.alerting.sweeper import SweepPolicy, Sweeper, new_worker_id
from services.alerting.webhooks import WebhookSender
from shared.clips import create_clip_store
from shared.db import Database
from shared.incident_events import IncidentEvents, RedisIncidentEvents
from shared.log_format import configure_logging
from shared.log_hygiene import install_log_hygiene
from shared.outcome_callback import OutcomeCallbacks

log = logging.getLogger(__name__)

DELIVER_TASK = "hearo.alerting.deliver"
QUEUE = "hearo-alerting"
T = TypeVar("T")


def celery_config(settings: AlertingSettings) -> dict[str, Any]:
    """The Celery configuration for ``settings`` (broker, reliability options)."""
    url = settings.resolved_broker_url
    config: dict[str, Any] = {
        "broker_url": url,
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Few reserved messages: a killed worker strands no more than its threads' worth
        # (they are re-published after redrive_after_s either way).
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # A publish that fails fast leaves the row due; the next sweep publishes it again.
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5},
        "worker_hijack_root_logger": False,
    }
    if url.startswith("filesystem://"):
        queue = settings.broker_folder / "queue"
        control = settings.broker_folder / "control"
        for folder in (queue, control):
            folder.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.05,
        }
        config["worker_enable_remote_control"] = False
    return config


class AlertingRuntime:
    """The worker process's asyncio side: one loop in a thread with the database, the HTTP
    client, the dispatcher and the sweeper. ``start()`` before consuming, ``stop()`` after."""

    def __init__(self, settings: AlertingSettings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self.owner = new_worker_id()
        self.router = Router(settings.agencies, settings.routes)
        self.faults = FaultInjector(
            settings.fault_steps, settings.fault_kill_probability, first_kill_marker=settings.fault_first_kill_marker
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="alerting-runtime", daemon=True)
        self._stop = asyncio.Event()
        self._sweep: Future[None] | None = None
        self._retain: Future[None] | None = None
        self._anomaly: Future[None] | None = None
        self.dispatcher: Dispatcher | None = None
        self.metrics = AlertingMetrics()
        self._meter: Future[None] | None = None

    def start(self) -> None:
        self._thread.start()
        self.call(self._open())
        self._sweep = asyncio.run_coroutine_threadsafe(self._sweeper.run(self._stop), self.loop)
        self._retain = asyncio.run_coroutine_threadsafe(self._retention.run(self._stop), self.loop)
        self._anomaly = asyncio.run_coroutine_threadsafe(self._anomaly_keeper.run(self._stop), self.loop)
        self._meter = asyncio.run_coroutine_threadsafe(
            self.metrics.run(self.db, self._stop, self.settings.metrics_interval_s), self.loop
        )

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the runtime's loop and wait for its result (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def deliver(self, table: str, row_id: str) -> str:
        """The Celery task's body: one delivery, on the runtime's loop."""
        return self.call(self._deliver(table, uuid.UUID(row_id)))

    async def _deliver(self, table: str, row_id: uuid.UUID) -> str:
        """One delivery and its metrics: for a Celery message, or from the sweeper itself while
        the broker is unreachable."""
        assert self.dispatcher is not None, "runtime not started"
        outcome = await self.dispatcher.deliver(table, row_id)
        try:
            await self.metrics.observe_delivery(self.db, table, row_id, outcome)
        except Exception as error:  # the delivery is done; a metric must not turn it into a failure
            log.warning("delivery metrics not recorded: %s", type(error).__name__)
        # The plain value: Celery logs the task's result by repr, and operators grep for 'sent'.
        return outcome.value

    async def _deliver_without_broker(self, table: str, row_id: uuid.UUID) -> str:
        """A delivery the sweeper runs itself: the broker refused its message (counted, alerted on)."""
        self.metrics.without_broker.labels(table).inc()
        return await self._deliver(table, row_id)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self._stop.set)
        for job in (self._sweep, self._retain, self._anomaly, self._meter):
            if job is not None:
                job.result(timeout=30)
        self.call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    async def _open(self) -> None:
        s = self.settings
        self.db = Database(s.database_url)
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=100), follow_redirects=False)
        self.events: IncidentEvents | None = RedisIncidentEvents(s.redis_url) if s.redis_url else None
        clips = create_clip_store(s.clips)
        reports = ReportBuilder(
            self.db, self.router, clips,
            clip_wait_s=s.clip_wait_s, link_ttl_s=s.clips.link_ttl_s, history_limit=s.history_limit,
            callbacks=OutcomeCallbacks.from_settings(s.clips),
        )
        sms = SmsSender(
            self.http, provider_url=s.sms_provider_url, headers=s.sms_provider_headers,
            template=s.sms_template, sender=s.sms_sender, timeout_s=s.send_timeout_s,
            secrets=s.sms_provider_secrets,
        )
        self.dispatcher = Dispatcher(
            self.db,
            owner=self.owner,
            router=self.router,
            reports=reports,
            webhooks=WebhookSender(self.http, s.send_timeout_s),
            sms=sms,
            contact_secrets=s.contact_webhook_secrets,
            policy=RetryPolicy(s.max_attempts, s.backoff_base_s, s.backoff_max_s, s.lease_s, s.worker_stale_s),
            ops=MeteredOpsAlerter(self.metrics, self.http, s.ops_webhook_url, s.send_timeout_s),
            faults=self.faults,
            events=self.events,
            rng=random.Random(),
        )
        self._sweeper = Sweeper(
            self.db,
            owner=self.owner,
            router=self.router,
            publish=self._publish,
            policy=SweepPolicy(s.sweep_interval_s, s.redrive_after_s, s.claim_batch, s.worker_stale_s, s.heartbeat_s),
            faults=self.faults,
            events=self.events,
            duplicate_messages=s.fault_duplicate_messages,
            deliver_locally=self._deliver_without_broker,
            local_concurrency=s.concurrency,
        )
        self._retention = Retention(
            self.db, clips,
            RetentionPolicy(s.cancelled_clip_grace_s, s.personal_data_retention_s, s.retention_interval_s),
            actor=self.owner,
        )
        # Away and alone modes: the devices' models are trained here, never on a gateway.
        self._anomaly_keeper = AnomalyKeeper(self.db, s.anomaly, actor=self.owner, events=self.events)

    def _publish(self, table: str, row_id: str) -> None:
        self.app.send_task(DELIVER_TASK, args=[table, row_id], queue=QUEUE)

    async def _close(self) -> None:
        await self._sweeper.unregister()
        await self.http.aclose()
        if self.events is not None:
            await self.events.close()
        await self.db.dispose()


def create_celery(settings: AlertingSettings) -> tuple[Celery, AlertingRuntime]:
    """The Celery app with the deliver task bound to a (not yet started) runtime."""
    app = Celery("hearo-alerting", set_as_current=False)
    app.conf.update(celery_config(settings))
    runtime = AlertingRuntime(settings, app)

    @app.task(name=DELIVER_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def deliver(table: str, row_id: str) -> str:
        """Deliver one outbox row (idempotent: a row that is done or held is left alone)."""
        return runtime.deliver(table, row_id)

    return app, runtime


def run_worker(settings: AlertingSettings, *, loglevel: str = "INFO") -> int:
    """Run the worker in the foreground until SIGTERM/SIGINT (warm shutdown); returns the exit code."""
    configure_logging(settings.log_format, loglevel)
    install_log_hygiene()
    app, runtime = create_celery(settings)
    runtime.start()
    if settings.metrics_port:
        runtime.metrics.serve(settings.metrics_port)
    log.info("alerting worker %s: broker %s, database %s", runtime.owner,
             settings.resolved_broker_url.split("@")[-1], settings.database_url.split("@")[-1])
    try:
        worker = app.Worker(
            pool="threads",
            concurrency=settings.concurrency,
            loglevel=loglevel,
            queues=[QUEUE],
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
            hostname=f"alerting@{runtime.owner}",
        )
        worker.start()
        return int(worker.exitcode or 0)
    finally:
        runtime.stop()


def main() -> int:
    settings = AlertingSettings()
    return run_worker(settings, loglevel=settings.log_level)


if __name__ == "__main__":
    raise SystemExit(main())
