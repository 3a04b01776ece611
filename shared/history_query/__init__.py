"""Questions over a device's history ("어젯밤에 무슨 일 있었어?", "any alarms this week?").

* :mod:`~shared.history_query.parse`: the question as a :class:`HistoryQuery` (time range,
  classes, states, language), or :class:`NotUnderstood`; rule-based, nothing remote.
* :mod:`~shared.history_query.time_range`: its time words as a range; the parser's part.
* :mod:`~shared.history_query.question_text`: the question as the parser reads it, each
  phrase read once.
* :mod:`~shared.history_query.vocabulary`: every word it understands and answers with.
* :mod:`~shared.history_query.answer`: the answer in the question's language.
* :mod:`~shared.history_query.ask`: both over the database, for ``GET /v1/ask`` (docs/ask.md).
"""

from shared.history_query.answer import HistoryEvent, event_summary, not_understood, render_answer
from shared.history_query.ask import MAX_EVENTS, HistoryAnswer, ask_history, find_events
from shared.history_query.parse import (
    DEFAULT_TIME_ZONE,
    HistoryQuery,
    Language,
    NotUnderstood,
    parse_question,
    question_language,
    time_zone,
)

__all__ = [
    "DEFAULT_TIME_ZONE",
    "MAX_EVENTS",
    "HistoryAnswer",
    "HistoryEvent",
    "HistoryQuery",
    "Language",
    "NotUnderstood",
    "ask_history",
    "event_summary",
    "find_events",
    "not_understood",
    "parse_question",
    "question_language",
    "render_answer",
    "time_zone",
]
