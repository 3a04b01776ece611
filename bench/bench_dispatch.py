"""The timer under load: delay from each incident's deadline to the agency receiving its report.

With N pending incidents (default 1,000) whose deadlines fall evenly over a window (default
60 s: as if 1,000 detections came in the minute before, each with its 60 s countdown),
two alerting workers (production timings, ``threads`` pool) on PostgreSQL and a Redis
broker report to a real receiving agency over HTTP. Printed per run: p50, p99 and max of
``received_at - deadline_at`` (both on this machine's clock; the database is local), how
many reports arrived, and duplicate attempts the receiver de-duplicated.

Runs: ``normal``, then ``kill``: one worker is SIGKILLed mid-flight (at 40 % of the window)
and restarted by the supervisor; its leases are re-driven when its heartbeat goes stale
(``HEARO_ALERTING_WORKER_STALE_S``, default 4 s), so the tail shows that bound.

    .venv/bin/python bench/bench_dispatch.py [--incidents 1000] [--window 60] [--workers 2] [--timeline]

A short ``--window`` (10 s: 100 deadlines a second) measures the burst capacity instead.

Needs PostgreSQL (``HEARO_TEST_POSTGRES_URL``, admin URL; a scratch database is created and
dropped) and Redis (``HEARO_TEST_REDIS_URL``; database 13 is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import redis
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.db import Database, upgrade_database  # noqa: E402
from shared.db.models import Incident  # noqa: E402
from shared.incidents import open_incident  # noqa: E402
from tests.alerting_support import AgencyServer, WorkerSupervisor, make_device, settled, worker_env  # noqa: E402

ADMIN_URL = os.environ.get("HEARO_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HEARO_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/13"
LEAD_S = 5.0  # workers start and warm up before the first deadline


async def scratch_database(name: str, create: bool) -> str:
    admin = create_async_engine(make_url(ADMIN_URL), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as connection:
        if create:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        else:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(label: str, args: argparse.Namespace, kill: bool) -> None:
    name = f"hearo_bench_{uuid.uuid4().hex[:12]}"
    url = await scratch_database(name, create=True)
    redis.Redis.from_url(REDIS_URL).flushdb()
    try:
        await asyncio.to_thread(upgrade_database, url)
        db = Database(url)
        for _ in range(args.incidents):
            device = await make_device(db)
            await open_incident(db, device_id=device, class_key="fire", confidence=0.9, countdown_s=3600)
        # Then the schedule, in one statement: deadlines evenly over the window, starting
        # LEAD_S from now (time for the workers to start).
        async with db.session() as session:
            await session.execute(
                text(
                    "UPDATE incidents SET deadline_at = statement_timestamp() "
                    "+ make_interval(secs => :lead + :window * (r.n - 1) / :count) "
                    "FROM (SELECT id, row_number() OVER (ORDER BY detected_at) AS n FROM incidents) r "
                    "WHERE incidents.id = r.id"
                ),
                {"lead": LEAD_S, "window": args.window, "count": args.incidents},
            )
        first_deadline = time.time() + LEAD_S
        with tempfile.TemporaryDirectory() as tmp, AgencyServer() as agency:
            env = worker_env(url, Path(tmp) / "var", agency, broker_url=REDIS_URL, clip_wait_s="0",
                             concurrency=str(args.concurrency))
            with WorkerSupervisor(env, Path(tmp) / "logs", count=args.workers) as workers:
                if kill:
                    await asyncio.sleep(max(0.0, first_deadline + 0.4 * args.window - time.time()))
                    workers.kill_one()
                    killed_at = time.time()
                done = await settled(db, timeout_s=LEAD_S + args.window + 120)
            async with db.session() as session:
                deadlines = {str(i.id): i.deadline_at for i in (await session.scalars(select(Incident))).all()}
            scheduled_from = min(deadlines.values()).timestamp()
            reports = agency.reports()
            timeline = sorted(
                (deadlines[r["payload"]["data"]["incident_id"]].timestamp() - scheduled_from,
                 (datetime.fromisoformat(r["received_at"]) - deadlines[r["payload"]["data"]["incident_id"]]).total_seconds())
                for r in reports
            )
            delays = [delay for _, delay in timeline]
            duplicates = sum(r["attempts"] - 1 for r in reports)
        await db.dispose()
    finally:
        await scratch_database(name, create=False)
    print(f"\n[{label}] {args.incidents} incidents, deadlines over {args.window:g} s, "
          f"{args.workers} workers x {args.concurrency} threads, PostgreSQL + Redis broker")
    if kill:
        print(f"  one worker SIGKILLed at +{killed_at - scheduled_from:.1f} s into the window; restarts: {len(workers.deaths)}")
    print(f"  settled: {done}; reports received: {len(reports)} / {args.incidents}; "
          f"duplicate attempts de-duplicated: {duplicates}")
    if delays:
        print(f"  delay deadline -> agency received: p50 {percentile(delays, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms, "
              f"mean {statistics.fmean(delays) * 1000:.0f} ms")
        if args.timeline:
            step = args.window / 10
            for k in range(10):
                part = [d for t, d in timeline if k * step <= t < (k + 1) * step]
                if part:
                    print(f"    deadlines +{k * step:4.1f}..{(k + 1) * step:4.1f} s: n={len(part):4d} "
                          f"p50 {percentile(part, 0.5) * 1000:6.0f} ms  max {max(part) * 1000:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which the deadlines fall")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeline", action="store_true", help="delays by tenth of the window")
    parser.add_argument("--runs", nargs="+", default=["normal", "kill"], choices=["normal", "kill"])
    args = parser.parse_args()
    for label in args.runs:
        asyncio.run(run(label, args, kill=label == "kill"))


if __name__ == "__main__":
    main()
