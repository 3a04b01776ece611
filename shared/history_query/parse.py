"""A question about what the device heard, in Korean or English, read as a filter.

:func:`parse_question` reads three things from a question, using only the words in
:mod:`~shared.history_query.vocabulary`: when (a time range in the device's time zone, relative
to ``now``), what (class keys of :mod:`shared.taxonomy`), and how it ended (states of
:class:`~shared.incident_state.IncidentState`). A question without a time it can tell is
:class:`NotUnderstood`: the range is never guessed.

>>> parse_question("어젯밤에 무슨 일 있었어?", now, ZoneInfo("Asia/Seoul"))
HistoryQuery(start=<yesterday 18:00>, end=<today 06:00>, classes=(), states=(), language='ko', period='어젯밤')

How the time words combine (docs/ask.md has the table):

* a span back from now ("최근 3일", "past 24 hours", "lately") wins over anything else;
* a clock time ("새벽 3시", "at 3am") is a window of an hour either side, on the named day, or
  else its latest occurrence that is not in the future; an hour without am/pm is the latest of
  its two readings (3 or 15 o'clock) that is not in the future;
* a part of the day ("아침", "night") on the named day, or else its latest occurrence that has
  begun; a day ("어제", "on Monday"); a weekend, a week (Monday to Sunday), a month;
* "since ..." / "...부터" ends the range at ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.history_query import vocabulary as words
from shared.incident_state import IncidentState
from shared.taxonomy import CLASSES, CLASS_KEYS

Language = Literal["ko", "en"]

DEFAULT_TIME_ZONE = "Asia/Seoul"
# Korea keeps no daylight saving time: the fixed offset is exact where no tz database is installed.
_SEOUL = timezone(timedelta(hours=9), "KST")

_T = TypeVar("_T")


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
    text = _Text(question)
    agencies = [agency for _, agency in text.take_each(words.AGENCY_WORDS)]
    when = _read_when(text, now.astimezone(tz))
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


# --- reading the text -----------------------------------------------------------------------------

_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
# A word starts where no Hangul letter, Latin letter or digit comes before.
_WORD_START = r"(?<![\uac00-\ud7a3a-z0-9])"
_ALNUM = re.compile(r"[a-z0-9]")
_TAKEN = "\x00"


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_WORD_START + "(?:" + pattern + ")")


class _Text:
    """The question in lower case with single spaces. A matched phrase is blanked out so that no
    word is read twice, and the time phrases are remembered in the question's own spelling."""

    def __init__(self, question: str) -> None:
        chars: list[str] = []
        self._origin: list[int] = []  # where each character came from in the question
        for i, char in enumerate(question):
            if char.isspace() or not char.isprintable():
                if chars and chars[-1] != " ":
                    chars.append(" ")
                    self._origin.append(i)
                continue
            lower = char.lower()
            chars.append(lower if len(lower) == 1 else char)
            self._origin.append(i)
        self.text = "".join(chars).replace("\u2019", "'")
        self._question = question
        self._time_spans: list[tuple[int, int]] = []

    def take(self, pattern: str, *, is_time: bool = False) -> list[re.Match[str]]:
        """Each match of ``pattern`` at a word start, blanked out of the text."""
        found = [m for m in _compiled(pattern).finditer(self.text) if m.end() > m.start() and self._ends_word(m)]
        for m in found:
            self._blank(m.start(), m.end(), is_time)
        return found

    def take_suffix(self, pattern: str) -> bool:
        """Whether ``pattern`` occurs anywhere (a Korean ending such as 부터); blanks it out."""
        found = list(re.finditer(pattern, self.text))
        for m in found:
            self._blank(m.start(), m.end(), True)
        return bool(found)

    def take_first(self, table: Sequence[tuple[str, _T]], *, is_time: bool = True) -> tuple[re.Match[str], _T] | None:
        """The meaning of the first entry of ``table`` that occurs (all of its matches taken)."""
        for pattern, meaning in table:
            found = self.take(pattern, is_time=is_time)
            if found:
                return found[0], meaning
        return None

    def take_each(self, table: Sequence[tuple[str, _T]]) -> list[tuple[re.Match[str], _T]]:
        """Every entry of ``table`` that occurs, with its meaning, in the table's order."""
        return [(m, meaning) for pattern, meaning in table for m in self.take(pattern)]

    def period(self) -> str:
        """The time phrases as the question wrote them, in order, with what lay between them
        when that was only spaces ("월요일부터", "어제 새벽 3시")."""
        spans = sorted((self._origin[s], self._origin[e - 1] + 1) for s, e in self._time_spans)
        out = ""
        last_end: int | None = None
        for start, end in spans:
            if last_end is not None:
                gap = self._question[last_end:start]
                out += gap if gap.isspace() or not gap else " "
            out += self._question[start:end]
            last_end = end
        return " ".join(out.split())

    def _ends_word(self, m: re.Match[str]) -> bool:
        end = m.end()
        return end >= len(self.text) or not (_ALNUM.match(self.text[end - 1]) and _ALNUM.match(self.text[end]))

    def _blank(self, start: int, end: int, is_time: bool) -> None:
        self.text = self.text[:start] + _TAKEN * (end - start) + self.text[end:]
        if is_time:
            self._time_spans.append((start, end))


# --- time -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clock:
    hour: int
    minute: int
    marker: str | None  # "am", "pm", "night" or None: said without one


@dataclass
class _When:
    """The time words found in a question, before they are put together."""

    span_hours: int | None = None
    since: bool = False
    clock: _Clock | None = None
    day: int | None = None  # offset from today
    weekday: int | None = None
    weekday_last: bool = False  # "지난 월요일", "last Monday": strictly before today
    part: str | None = None
    weekend: str | None = None
    week: int | None = None
    month: int | None = None
    refused: bool = False  # a span or a clock time that cannot be

    def anything(self) -> bool:
        return any(
            value is not None
            for value in (self.span_hours, self.clock, self.day, self.weekday, self.part, self.weekend, self.week, self.month)
        )


def _alternatives(table: Sequence[tuple[str, object]]) -> str:
    return "|".join(pattern for pattern, _ in table)


_MARKERS = _alternatives(words.HOUR_MARKERS)
_KO_HOUR_WORDS = "|".join(sorted(words.KO_HOURS, key=len, reverse=True))
_KO_CLOCK = (
    rf"(?:(?P<marker>{_MARKERS}) ?)?(?P<hour>[0-9]{{1,2}}|{_KO_HOUR_WORDS}) ?시(?!간)"
    r"(?: ?(?P<minute>[0-9]{1,2}) ?분| ?(?P<half>반))?"
)
_EN_CLOCK = (
    rf"(?:(?:{words.CLOCK_BEFORE}) )?(?P<hour>[0-9]{{1,2}})(?::(?P<minute>[0-9]{{2}}))? ?"
    rf"(?:(?P<marker>{_MARKERS})|o'?clock)(?: (?P<after>{_MARKERS}))?"
)
_EN_AT = rf"(?:{words.CLOCK_BEFORE}) (?P<hour>[0-9]{{1,2}})(?::(?P<minute>[0-9]{{2}}))?(?: (?P<after>{_MARKERS}))?"
_COLON = r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})"


def _marker_of(said: str | None) -> str | None:
    if said is None:
        return None
    return next(kind for pattern, kind in words.HOUR_MARKERS if re.fullmatch(pattern, said))


def _clock_of(m: re.Match[str]) -> _Clock | None:
    groups = m.groupdict()
    hour_said = groups["hour"]
    hour = words.KO_HOURS[hour_said] if hour_said in words.KO_HOURS else int(hour_said)
    minute = 30 if groups.get("half") else int(groups.get("minute") or 0)
    marker = _marker_of(groups.get("marker") or groups.get("after"))
    if hour > 24 or minute > 59:
        return None
    return _Clock(hour, minute, marker)


def _read_when(text: _Text, now: datetime) -> tuple[datetime, datetime] | None:
    when = _find_when(text)
    if when.refused or not when.anything():
        return None
    return _resolve(when, now)


def _find_when(text: _Text) -> _When:
    when = _When()
    for pattern, hours in words.RECENT_UNITS:
        for m in text.take(
            rf"(?:{words.RECENT_PREFIX}) ?(?P<n>[0-9]{{1,6}}) ?(?:{pattern})"
            rf"|(?P<m>[0-9]{{1,6}}) ?(?:{pattern}) ?(?:{words.RECENT_SUFFIX})",
            is_time=True,
        ):
            span = int(m.group("n") or m.group("m")) * hours
            when.refused |= not 0 < span <= words.MAX_SPAN_HOURS
            when.span_hours = when.span_hours or span
    recent = text.take_first(words.RECENT_WORDS)
    if recent is not None:
        when.span_hours = when.span_hours or recent[1]
    if text.take(words.RECENTLY, is_time=True):
        when.span_hours = when.span_hours or words.RECENTLY_HOURS
    when.since = bool(text.take(words.SINCE_BEFORE, is_time=True)) | text.take_suffix(words.SINCE_AFTER)

    for pattern in (_KO_CLOCK, _EN_CLOCK, _EN_AT, _COLON):
        for m in text.take(pattern, is_time=True):
            clock = _clock_of(m)
            when.refused |= clock is None
            when.clock = when.clock or clock
    said = text.take_first([(rf"(?:(?:{words.CLOCK_BEFORE}) )?(?:{p})", hour) for p, hour in words.CLOCK_WORDS])
    if said is not None:
        hour, marker = said[1]
        when.clock = when.clock or _Clock(hour, 0, marker)

    day_and_part = text.take_first(words.DAY_AND_PART)
    if day_and_part is not None:
        when.day, when.part = day_and_part[1]
    weekend = text.take_first(words.WEEKENDS)
    when.weekend = weekend[1] if weekend else None
    week = text.take_first(words.WEEKS)
    when.week = week[1] if week else None
    month = text.take_first(words.MONTHS)
    when.month = month[1] if month else None
    for pattern, weekday in words.WEEKDAYS:
        found = text.take(rf"(?:(?P<last>지난|저번|last) ?)?(?:{pattern})", is_time=True)
        if found and when.weekday is None:
            when.weekday, when.weekday_last = weekday, bool(found[0].group("last"))
    day = text.take_first(words.DAYS)
    if day is not None and when.day is None:
        when.day = day[1]
    part = text.take_first(words.PARTS)
    if part is not None and when.part is None:
        when.part = part[1]
    return when


def _resolve(when: _When, now: datetime) -> tuple[datetime, datetime]:
    tz = now.tzinfo
    assert tz is not None
    today = now.date()
    monday = today - timedelta(days=today.weekday())

    def at(day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day + timedelta(days=hour // 24), time(hour % 24, minute), tzinfo=tz)

    if when.span_hours is not None:
        return (now.astimezone(timezone.utc) - timedelta(hours=when.span_hours)).astimezone(tz), now

    named_day: date | None = None
    if when.weekday is not None:
        if when.week is not None:
            named_day = monday + timedelta(days=7 * when.week + when.weekday)
        else:
            back = (today.weekday() - when.weekday) % 7
            named_day = today - timedelta(days=back or (7 if when.weekday_last else 0))
    elif when.day is not None:
        named_day = today + timedelta(days=when.day)

    start: datetime
    end: datetime
    if when.clock is not None:
        days = [named_day] if named_day is not None else [today, today - timedelta(days=1)]
        marker = when.clock.marker or _PART_MARKERS.get(when.part or "")
        moments = [at(day, hour, when.clock.minute) for day in days for hour in _hours(when.clock.hour, marker)]
        past = [moment for moment in moments if moment <= now]
        moment = max(past) if past else min(moments)
        window = timedelta(minutes=words.CLOCK_WINDOW_MINUTES)
        start, end = (moment, now) if when.since else (moment - window, moment + window)
    elif when.part is not None:
        first, last = words.DAY_PARTS[when.part]
        day = named_day if named_day is not None else (today if at(today, first) <= now else today - timedelta(days=1))
        start, end = at(day, first), at(day, last)
    elif named_day is not None:
        start, end = at(named_day, 0), at(named_day, 24)
    elif when.weekend is not None:
        this_one = when.weekend == "recent" and today.weekday() >= 5
        saturday = monday + timedelta(days=5 if this_one else -2)
        start, end = at(saturday, 0), at(saturday, 48)
    elif when.week is not None:
        week_start = monday + timedelta(days=7 * when.week)
        start, end = at(week_start, 0), at(week_start, 24 * 7)
    else:
        assert when.month is not None
        first_day = today.replace(day=1)
        if when.month < 0:
            first_day = (first_day - timedelta(days=1)).replace(day=1)
        next_month = (first_day + timedelta(days=32)).replace(day=1)
        start, end = at(first_day, 0), at(next_month, 0)
    if when.since and start < now:
        end = now
    return start, end


# What a part of the day says about an hour said with it ("밤 11시", "아침 7시").
_PART_MARKERS = {"dawn": "am", "morning": "am", "afternoon": "pm", "evening": "pm", "night": "night"}


def _hours(hour: int, marker: str | None) -> list[int]:
    """The hours (from the start of the day; 24 and more: the next day) an hour said with
    ``marker`` can be (vocabulary.HOUR_MARKERS)."""
    if marker in ("am", "pm") and 1 <= hour <= 12:
        return [hour % 12 + (12 if marker == "pm" else 0)]
    if marker == "night":
        if 6 <= hour <= 11:
            return [hour + 12]
        if hour in (0, 12, 24):
            return [24]
        if 1 <= hour <= 5:
            return [24 + hour]
    if hour in (0, 24):
        return [hour]
    if hour <= 12:
        return [hour % 12, hour % 12 + 12]
    return [hour]

