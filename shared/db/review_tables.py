"""The review loop's table (migration 0007; docs/review.md): a reviewer's labels of incidents.

Kept apart from :mod:`shared.db.models` (one concept, and that module is full); registered on
``Base.metadata`` by :mod:`shared.db`'s import of this module.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class SegmentReview(Base):
    """A reviewer's label for one incident's audio (the review loop, ``hearo review``). The
    newest row of an incident is its reviewed label; earlier rows stay as the history."""

    __tablename__ = "segment_reviews"
    __table_args__ = (Index("ix_segment_reviews_incident", "incident_id", "reviewed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    # A class key of shared/taxonomy.py ("normal" for a false alarm), or "unclear".
    label: Mapped[str] = mapped_column(String(32))
    # What the system decided when the segment was reviewed (the incident's class_key).
    model_label: Mapped[str] = mapped_column(String(32))
    reviewer: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500))
    reviewed_at: Mapped[datetime]
