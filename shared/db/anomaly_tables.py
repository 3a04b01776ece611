"""The tables of away and alone modes (migration 0008; docs/anomaly.md): what a device heard
while learning, the models trained on it, and when it last heard a sound of activity.

Kept apart from :mod:`shared.db.models` (one concept, and that module is full); registered on
``Base.metadata`` by :mod:`shared.db`'s import of this module.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class AnomalySampleBatch(Base):
    """Window features a device heard while learning, one batch per flush: ``features`` is
    ``count`` pairs of consecutive windows ``[count][2][D]`` (shared/anomaly/features.py)."""

    __tablename__ = "anomaly_samples"
    __table_args__ = (Index("ix_anomaly_samples_device", "device_id", "heard_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    heard_from: Mapped[datetime]
    heard_until: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer)
    features: Mapped[list[Any]] = mapped_column(JSON)


class AnomalyModelRow(Base):
    """One trained model of a device (``version`` counts from 1); the newest ``active`` one
    judges its sound. ``params`` is :meth:`shared.anomaly.model.AnomalyModel.to_json`."""

    __tablename__ = "anomaly_models"
    __table_args__ = (UniqueConstraint("device_id", "version", name="uq_anomaly_models_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    trained_at: Mapped[datetime]
    learned_from: Mapped[datetime]
    learned_until: Mapped[datetime]
    samples: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    budget_per_week: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)


class AnomalyActivity(Base):
    """Per device: when its learning began, when it last heard anything and a sound of
    activity (written at most once a minute), and when inactivity was last flagged."""

    __tablename__ = "anomaly_activity"

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    learning_since: Mapped[datetime]
    last_heard_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime | None]
    inactivity_flagged_at: Mapped[datetime | None]
