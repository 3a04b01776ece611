"""The answer to a question about what the device heard, in the question's language.

>>> render_answer(query, events)
'어젯밤 (11월 24일 18:00 ~ 11월 25일 06:00): 2건이 있었어요 — 23:14 화재 경보 (취소됨), 02:40 낙상·사고 (119에 신고됨).'
>>> render_answer(query, [])   # English question, nothing found
'Last night (24 Nov 18:00 – 25 Nov 06:00): nothing was heard.'
>>> render_answer(parse_question("지난 주말에 119 신고된 거 있어?", now, tz), [])
'지난 주말 (11월 21일 00:00 ~ 11월 23일 00:00): 찾는 일(119, 신고됨)은 없었어요.'
>>> not_understood("en")
'I could not tell which time you mean. Try, for example: ...'
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.history_query import vocabulary as words
from shared.history_query.parse import HistoryQuery, Language
from shared.incident_state import IncidentState
from shared.incidents import IncidentView
from shared.taxonomy import CLASSES, Agency, by_key

# How many events the sentence names; the rest are counted ("외 3건", "and 3 more").
NAMED_IN_SENTENCE = 10

_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EN_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_KO_WEEKDAYS = "월화수목금토일"


@dataclass(frozen=True)
class HistoryEvent:
    """Something the device heard, as an answer lists it. Every detection is kept as an
    incident (it opens one, or adds evidence to the open one), so today every event is an
    incident; another kept record (an anomaly) would be another ``kind``."""

    kind: Literal["incident"]
    id: uuid.UUID
    class_key: str
    state: IncidentState
    at: datetime
    confidence: float

    @classmethod
    def of_incident(cls, incident: IncidentView) -> HistoryEvent:
        return cls("incident", incident.id, incident.class_key, incident.state, incident.detected_at, incident.confidence)


def render_answer(query: HistoryQuery, events: Sequence[HistoryEvent]) -> str:
    """One sentence in ``query.language``: the period, then the events oldest first, or that
    nothing (matching the question's classes and states) was heard."""
    ko = query.language == "ko"
    period = query.period if ko else query.period[:1].upper() + query.period[1:]
    head = f"{period} ({_range_text(query.start, query.end, query.language)}): "
    if not events:
        return head + _nothing(query)
    one_day = query.end - query.start <= timedelta(hours=30)
    ordered = sorted(events, key=lambda event: event.at)
    items = ", ".join(_event_text(event, query, one_day) for event in ordered[:NAMED_IN_SENTENCE])
    more = len(ordered) - NAMED_IN_SENTENCE
    if ko:
        return head + f"{len(ordered)}건이 있었어요 — {items}" + (f" 외 {more}건." if more > 0 else ".")
    count = f"{len(ordered)} event" + ("" if len(ordered) == 1 else "s")
    return head + f"{count} — {items}" + (f", and {more} more." if more > 0 else ".")


def not_understood(language: Language) -> str:
    """The honest answer to a question whose time could not be told, with examples."""
    examples = ", ".join(f"“{example}”" for example in words.EXAMPLES[language])
    if language == "ko":
        return f"언제를 말씀하시는지 알 수 없었어요. 이렇게 물어봐 주세요: {examples}"
    return f"I could not tell which time you mean. Try, for example: {examples}"


def event_summary(event: HistoryEvent, language: Language) -> str:
    """The event without its time: "화재 경보 (취소됨)", "fall or accident (reported to 119)"."""
    agency = by_key(event.class_key).agency
    state = words.STATE_PHRASES[language][event.state].format(agency=agency.value if agency else words.CONTACTS[language])
    return f"{words.CLASS_NAMES[language][event.class_key]} ({state})"


def _event_text(event: HistoryEvent, query: HistoryQuery, one_day: bool) -> str:
    at = event.at.astimezone(query.start.tzinfo)
    if one_day:
        when = f"{at:%H:%M}"
    elif query.language == "ko":
        when = f"{at.month}/{at.day}({_KO_WEEKDAYS[at.weekday()]}) {at:%H:%M}"
    else:
        when = f"{_EN_WEEKDAYS[at.weekday()]} {at.day} {_EN_MONTHS[at.month - 1]} {at:%H:%M}"
    return f"{when} {event_summary(event, query.language)}"


def _nothing(query: HistoryQuery) -> str:
    """That nothing was heard, naming what was looked for: the classes (or the agency whose
    classes they all are, for "119 신고된 거") and the states."""
    language = query.language
    agency = next((a for a in Agency if query.classes and set(query.classes) == _classes_of(a)), None)
    names = [agency.value] if agency else [words.CLASS_NAMES[language][key] for key in query.classes]
    states = list(dict.fromkeys(words.STATE_NAMES[language][state] for state in query.states))
    either = " 또는 " if language == "ko" else " or "
    what = ", ".join(part for part in (either.join(names), either.join(states)) if part)
    if language == "ko":
        return f"찾는 일({what})은 없었어요." if what else "들린 일이 없었어요."
    return f"nothing was heard matching {what}." if what else "nothing was heard."


def _classes_of(agency: Agency) -> set[str]:
    return {c.key for c in CLASSES if c.agency is agency}


def _range_text(start: datetime, end: datetime, language: Language) -> str:
    def day(moment: datetime) -> str:
        if language == "ko":
            return f"{moment.month}월 {moment.day}일"
        return f"{moment.day} {_EN_MONTHS[moment.month - 1]}"

    dash = " ~ " if language == "ko" else " – "
    end_text = f"{end:%H:%M}" if end.date() == start.date() else f"{day(end)} {end:%H:%M}"
    return f"{day(start)} {start:%H:%M}{dash}{end_text}"
