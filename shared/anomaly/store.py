"""The database side of away and alone modes: learning samples, models, activity, state.

The gateway writes samples (:func:`record_samples`, a batch every few minutes) and what it
heard (:func:`record_heard`, at most once a minute per session); the alerting worker trains
(:func:`train_device`, the model fitted in a thread) and reads activity for inactivity; the
gateway reads the active model of each device it streams for (:func:`active_models`) and the
device's state for ``GET /v1/devices/me`` (:func:`anomaly_state`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.anomaly.features import FEATURE_LENGTH
from shared.anomaly.model import MIN_SAMPLES, AnomalyModel, train_model
from shared.anomaly.policy import AnomalyPolicy
from shared.db import Database
from shared.db.anomaly_tables import AnomalyActivity, AnomalyModelRow, AnomalySampleBatch
from shared.db.clock import db_now

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ActiveModel:
    version: int
    model: AnomalyModel


async def _ensure_activity(session: AsyncSession, device_id: uuid.UUID) -> None:
    if await session.get(AnomalyActivity, device_id) is None:
        session.add(AnomalyActivity(device_id=device_id, learning_since=db_now()))
        await session.flush()


async def record_samples(
    db: Database, device_id: uuid.UUID, pairs: list[list[list[float]]], heard_from: datetime,
    heard_until: datetime, max_samples: int,
) -> None:
    """Store a batch of window pairs; the device's oldest batches go beyond ``max_samples``."""
    async with db.session() as session:
        await _ensure_activity(session, device_id)
        session.add(AnomalySampleBatch(device_id=device_id, heard_from=heard_from, heard_until=heard_until,
                                       count=len(pairs), features=pairs))  # fmt: skip
        await session.flush()
        batches = (await session.execute(
            select(AnomalySampleBatch.id, AnomalySampleBatch.count)
            .where(AnomalySampleBatch.device_id == device_id).order_by(AnomalySampleBatch.id.desc())
        )).all()  # fmt: skip
        kept, dropped = 0, []
        for batch_id, count in batches:
            kept += count
            if kept > max_samples:
                dropped.append(batch_id)
        if dropped:
            await session.execute(delete(AnomalySampleBatch).where(AnomalySampleBatch.id.in_(dropped)))


async def record_heard(db: Database, device_id: uuid.UUID, *, active: bool) -> None:
    """The device heard sound now (``active``: a sound of activity among it)."""
    values: dict[str, Any] = {"last_heard_at": db_now()}
    if active:
        values["last_activity_at"] = db_now()
    for _ in range(2):
        async with db.session() as session:
            result = await session.execute(
                update(AnomalyActivity).where(AnomalyActivity.device_id == device_id).values(**values)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                return
        try:
            async with db.session() as session:
                session.add(AnomalyActivity(device_id=device_id, learning_since=db_now(), **values))
            return
        except IntegrityError:
            continue  # another session inserted it: update it


async def active_models(db: Database, device_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, ActiveModel]:
    """The newest active model of each device that has one."""
    if not device_ids:
        return {}
    async with db.session() as session:
        rows = (await session.scalars(
            select(AnomalyModelRow).where(AnomalyModelRow.device_id.in_(device_ids), AnomalyModelRow.active)
            .order_by(AnomalyModelRow.version)
        )).all()  # fmt: skip
    models = {}
    for row in rows:
        try:
            models[row.device_id] = ActiveModel(row.version, AnomalyModel.from_json(row.params))
        except ValueError as exc:  # an older format: the device learns on, and the next training replaces it
            log.warning("device %s: anomaly model v%d not used: %s", row.device_id, row.version, exc)
    return models


async def anomaly_state(db: Database, device_id: uuid.UUID, policy: AnomalyPolicy) -> dict[str, Any]:
    """What ``GET /v1/devices/me`` shows of the device's learning and model."""
    async with db.session() as session:
        activity = await session.get(AnomalyActivity, device_id)
        heard = await session.scalar(
            select(func.coalesce(func.sum(AnomalySampleBatch.count), 0)).where(AnomalySampleBatch.device_id == device_id)
        )
        model = await session.scalar(
            select(AnomalyModelRow).where(AnomalyModelRow.device_id == device_id, AnomalyModelRow.active)
            .order_by(AnomalyModelRow.version.desc()).limit(1)
        )
    wanted = policy.learning_days * 86400 / policy.sample_every_s
    return {
        "enabled": policy.enabled,
        "learning_since": None if activity is None else activity.learning_since.isoformat(),
        "learning_days": policy.learning_days,
        "learned_share": round(min(1.0, int(heard or 0) / wanted), 3),
        "active_version": None if model is None else model.version,
        "trained_at": None if model is None else model.trained_at.isoformat(),
        "threshold": None if model is None else round(model.threshold, 3),
        "budget_per_week": policy.budget_per_week if model is None else model.budget_per_week,
        "last_activity_at": None if activity is None or activity.last_activity_at is None
        else activity.last_activity_at.isoformat(),
    }


async def devices_due_training(db: Database, policy: AnomalyPolicy) -> list[uuid.UUID]:
    """Devices that learned for ``learning_days`` and have no model, or one older than
    ``retrain_every_days``."""
    newest = (
        select(AnomalyModelRow.device_id, func.max(AnomalyModelRow.trained_at).label("trained_at"))
        .group_by(AnomalyModelRow.device_id).subquery()
    )
    async with db.session() as session:
        rows = (await session.execute(
            select(AnomalyActivity.device_id, newest.c.trained_at, db_now())
            .outerjoin(newest, newest.c.device_id == AnomalyActivity.device_id)
            .where(AnomalyActivity.learning_since <= db_now(-policy.learning_days * 86400))
        )).all()  # fmt: skip
    retrain = timedelta(days=policy.retrain_every_days)
    return [device_id for device_id, trained_at, now in rows if trained_at is None or now - trained_at >= retrain]


async def train_device(db: Database, device_id: uuid.UUID, policy: AnomalyPolicy, hop_s: float) -> int | None:
    """Train a new version of the device's model from its samples and make it the active one;
    returns the version (None: too few samples yet)."""
    async with db.session() as session:
        batches = (await session.scalars(
            select(AnomalySampleBatch).where(AnomalySampleBatch.device_id == device_id).order_by(AnomalySampleBatch.id)
        )).all()  # fmt: skip
    # Samples of an older vector (before the class scores and the moment) are not this model's.
    pairs = [pair for batch in batches for pair in batch.features if len(pair[0]) == FEATURE_LENGTH]
    if len(pairs) < MIN_SAMPLES:
        return None
    model = await asyncio.to_thread(
        train_model, np.asarray(pairs, dtype=np.float64), budget_per_week=policy.budget_per_week, hop_s=hop_s,
        cues=policy.cues,
    )
    return await store_model(db, device_id, model, batches[0].heard_from, batches[-1].heard_until)


async def store_model(
    db: Database, device_id: uuid.UUID, model: AnomalyModel, learned_from: datetime, learned_until: datetime
) -> int:
    """Store ``model`` as the device's next version, the only active one; returns the version."""
    async with db.session() as session:
        version = int(await session.scalar(
            select(func.coalesce(func.max(AnomalyModelRow.version), 0)).where(AnomalyModelRow.device_id == device_id)
        ) or 0) + 1  # fmt: skip
        await session.execute(
            update(AnomalyModelRow).where(AnomalyModelRow.device_id == device_id).values(active=False)
        )
        session.add(AnomalyModelRow(
            device_id=device_id, version=version, trained_at=db_now(), learned_from=learned_from,
            learned_until=learned_until, samples=model.calibrations[0].samples, threshold=model.threshold,
            budget_per_week=model.budget_per_week, active=True, params=model.to_json(),
        ))  # fmt: skip
    return version
