"""A question over one device's history, answered from the database (``GET /v1/ask``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo

from shared.db import Database
from shared.history_query import vocabulary as words
from shared.history_query.answer import HistoryEvent, not_understood, render_answer
from shared.history_query.parse import HistoryQuery, Language, NotUnderstood, parse_question
from shared.incidents import list_incidents

# The most incidents one answer reads (the newest of the range): far more than a household has.
MAX_EVENTS = 500


@dataclass(frozen=True)
class HistoryAnswer:
    """``query`` is None when the question's time could not be told (``understood`` false):
    then ``text`` says so and ``examples`` are questions that are understood."""

    question: str
    language: Language
    query: HistoryQuery | None
    text: str
    events: tuple[HistoryEvent, ...]
    examples: tuple[str, ...]

    @property
    def understood(self) -> bool:
        return self.query is not None


async def ask_history(
    db: Database, device_id: uuid.UUID, question: str, *, now: datetime, tz: tzinfo
) -> HistoryAnswer:
    """The answer to ``question`` over ``device_id``'s events only, times relative to ``now`` in ``tz``."""
    query = parse_question(question, now, tz)
    if isinstance(query, NotUnderstood):
        return HistoryAnswer(
            question, query.language, None, not_understood(query.language), (), words.EXAMPLES[query.language]
        )
    events = await find_events(db, device_id, query)
    return HistoryAnswer(question, query.language, query, render_answer(query, events), events, ())


async def find_events(db: Database, device_id: uuid.UUID, query: HistoryQuery) -> tuple[HistoryEvent, ...]:
    """The device's events that ``query`` asks about, oldest first.

    Incidents are the only events kept: a detection opens one or adds to the open one, and
    nothing below the detector's threshold is stored. A later record of its own (anomalies)
    is read here beside them, as another :attr:`HistoryEvent.kind`."""
    class_key = query.classes[0] if len(query.classes) == 1 else None
    incidents = await list_incidents(
        db, device_id, since=query.start, until=query.end, class_key=class_key, limit=MAX_EVENTS
    )
    found = (HistoryEvent.of_incident(i) for i in incidents if query.matches(i.class_key, i.state))
    return tuple(sorted(found, key=lambda event: event.at))
