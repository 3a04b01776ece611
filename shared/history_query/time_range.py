"""When a question asks about: its time words (:mod:`~shared.history_query.vocabulary`) read
as a range in the device's time zone, relative to ``now``. A time it cannot tell is None: the
range is never guessed.

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
from datetime import date, datetime, time, timedelta, timezone

from shared.history_query import vocabulary as words
from shared.history_query.question_text import QuestionText


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


def read_time_range(text: QuestionText, now: datetime) -> tuple[datetime, datetime] | None:
    """The range ``text``'s time words name, as ``[start, end)`` in ``now``'s zone; None when
    it names none or one that cannot be (a span past a year, 25 o'clock)."""
    when = _find_when(text)
    if when.refused or not when.anything():
        return None
    return _resolve(when, now)


def _find_when(text: QuestionText) -> _When:
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

