"""A question about what the device heard, in Korean or English, read as a filter.

:func:`parse_question` reads three things from a question, using only the words in
:mod:`~shared.history_query.vocabulary`: when (a time range in the device's time zone, relative
to ``now``), what (class keys of :mod:`shared.taxonomy`), and how it ended (states of
:class:`~shared.incident_state.IncidentState`). A question without a time it can tell is
:class:`NotUnderstood`: the range is never guessed.

>>> parse_question("어젯밤에 무슨 일 있었어?", now, ZoneInfo("Asia/Seoul"))
HistoryQuery(start=<yesterday 18:00>, end=<today 06:00>, classes=(), states=(), language='ko', period='어젯밤')

How the time words combine is :mod:`~shared.history_query.time_range`'s (docs/ask.md has the
table); :class:`~shared.history_query.question_text.QuestionText` makes sure no word is read twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.history_query import vocabulary as words
from shared.history_query.question_text import QuestionText
from shared.history_query.time_range import read_time_range
from shared.incident_state import IncidentState
from shared.taxonomy import CLASSES, CLASS_KEYS

Language = Literal["ko", "en"]

DEFAULT_TIME_ZONE = "Asia/Seoul"
# Korea keeps no daylight saving time: the fixed offset is exact where no tz database is installed.
_SEOUL = timezone(timedelta(hours=9), "KST")

_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")


@dataclass(frozen=True)
class HistoryQuery:
    """Events in ``[start, end)`` (aware, in the question's time zone) of ``classes`` (class
    keys; empty: every class) that stand in ``states`` (empty: every state). ``period`` is the
    question's own words for the time ("어젯밤", "last night"), for the answer to repeat."""

    start: datetime
    end: datetime
    classes: tuple[str, ...]
    states: tuple[IncidentState, ...]
    language: Language
    period: str

    def matches(self, class_key: str, state: IncidentState) -> bool:
        """Whether an event of this class in this state is one the question asks about."""
        return (not self.classes or class_key in self.classes) and (not self.states or state in self.states)


@dataclass(frozen=True)
class NotUnderstood:
    """A question whose time could not be told: it is answered with examples, never guessed."""

    language: Language


def time_zone(name: str) -> tzinfo:
    """The IANA zone ``name`` (``Asia/Seoul``); ValueError naming it when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        if name == DEFAULT_TIME_ZONE:
            return _SEOUL
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Asia/Seoul)") from None


def question_language(question: str) -> Language:
    """``ko`` when the question has any Hangul in it, else ``en``."""
    return "ko" if _HANGUL.search(question) else "en"


def parse_question(question: str, now: datetime, tz: tzinfo) -> HistoryQuery | NotUnderstood:
    """The filter ``question`` asks for, its times relative to ``now`` (aware) in zone ``tz``."""
    language = question_language(question)
    text = QuestionText(question)
    agencies = [agency for _, agency in text.take_each(words.AGENCY_WORDS)]
    when = read_time_range(text, now.astimezone(tz))
    classes = {key for _, keys in text.take_each(words.CLASS_WORDS) for key in keys}
    states = {state for _, found in text.take_each(words.STATE_WORDS) for state in found}
    if when is None:
        return NotUnderstood(language)
    if agencies:
        reported_to = {c.key for c in CLASSES if c.agency in agencies}
        # "119 신고된 화재": the fires among what went to 119. Words that contradict the number
        # ("112 화재") keep the words.
        classes = (classes & reported_to) or classes or reported_to
        # Asking about 119 is asking about what was reported to it.
        states = states or set(words.REPORTED)
    start, end = when
    return HistoryQuery(
        start=start,
        end=end,
        classes=tuple(key for key in CLASS_KEYS if key in classes),
        states=tuple(state for state in IncidentState if state in states),
        language=language,
        period=text.period(),
    )
