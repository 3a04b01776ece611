"""shared/history_query: the table of questions and the filters they must be read as, and the
answers in the question's language. ``now`` is fixed: Wednesday 25 November 2026, 10:30 in Seoul."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.history_query import (
    HistoryEvent,
    HistoryQuery,
    NotUnderstood,
    not_understood,
    parse_question,
    render_answer,
    time_zone,
)
from shared.history_query.vocabulary import EXAMPLES
from shared.incident_state import IncidentState

SEOUL = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=SEOUL)  # a Wednesday

CANCELLED = (IncidentState.CANCELLED,)
PENDING = (IncidentState.PENDING,)
FAILED = (IncidentState.FAILED,)
REPORTED = (IncidentState.DISPATCHING, IncidentState.DISPATCHED)
TO_119 = ("trapped", "electric", "gas", "fire", "medical", "accident", "help")


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SEOUL)


def back(hours: int) -> datetime:
    return NOW - timedelta(hours=hours)


# question → (start, end, classes, states); empty classes or states: any.
CASES: list[tuple[str, datetime, datetime, tuple[str, ...], tuple[IncidentState, ...]]] = [
    # parts of a day, days
    ("어젯밤에 무슨 일 있었어?", at(11, 24, 18), at(11, 25, 6), (), ()),
    ("What happened last night?", at(11, 24, 18), at(11, 25, 6), (), ()),
    ("오늘 아침에 무슨 일 있었어?", at(11, 25, 6), at(11, 25, 12), (), ()),
    ("anything this morning?", at(11, 25, 6), at(11, 25, 12), (), ()),
    ("어제 저녁에 전기 사고 있었어?", at(11, 24, 18), at(11, 24, 22), ("electric",), ()),
    ("yesterday afternoon any screams?", at(11, 24, 12), at(11, 24, 18), ("crime",), ()),
    ("밤에 할머니 쓰러지셨어?", at(11, 24, 18), at(11, 25, 6), ("medical", "accident"), ()),
    ("오늘 밤에 무슨 일 있으면?", at(11, 25, 18), at(11, 26, 6), (), ()),
    ("어제 무슨 일 있었어?", at(11, 24), at(11, 25), (), ()),
    ("anything yesterday?", at(11, 24), at(11, 25), (), ()),
    ("오늘 무슨 일 있었어?", at(11, 25), at(11, 26), (), ()),
    ("anything today?", at(11, 25), at(11, 26), (), ()),
    ("그저께 무슨 소리 났어?", at(11, 23), at(11, 24), (), ()),
    ("what happened the day before yesterday?", at(11, 23), at(11, 24), (), ()),
    ("anything on Tuesday?", at(11, 24), at(11, 25), (), ()),
    ("지난주 금요일에 도둑 들었어?", at(11, 20), at(11, 21), ("crime",), ()),
    ("glass breaking last Friday?", at(11, 20), at(11, 21), ("crime",), ()),
    # clock times: an hour either side
    ("새벽 3시에 무슨 소리였어?", at(11, 25, 2), at(11, 25, 4), (), ()),
    ("what woke grandma at 3am?", at(11, 25, 2), at(11, 25, 4), (), ()),
    ("3시에 무슨 일 있었어?", at(11, 25, 2), at(11, 25, 4), (), ()),
    ("어제 새벽 3시에 뭐였어?", at(11, 24, 2), at(11, 24, 4), (), ()),
    ("어젯밤 2시쯤 무슨 소리?", at(11, 25, 1), at(11, 25, 3), (), ()),
    ("어제 오후 3시 반에 무슨 일?", at(11, 24, 14, 30), at(11, 24, 16, 30), (), ()),
    ("what was that at 11pm yesterday?", at(11, 24, 22), at(11, 25, 0), (), ()),
    ("anything around midnight?", at(11, 24, 23), at(11, 25, 1), (), ()),
    ("어제 밤 11시에 가스 경보?", at(11, 24, 22), at(11, 25, 0), ("gas",), ()),
    # weeks, weekends, months
    ("지난주에 무슨 일 있었어?", at(11, 16), at(11, 23), (), ()),
    ("anything last week?", at(11, 16), at(11, 23), (), ()),
    ("이번 주에 경보 있었어?", at(11, 23), at(11, 30), (), ()),
    ("any alarms this week?", at(11, 23), at(11, 30), (), ()),
    ("주말에 무슨 일 있었어?", at(11, 21), at(11, 23), (), ()),
    ("이번 주말에 무슨 일 있었어?", at(11, 21), at(11, 23), (), ()),
    ("지난 주말에 119 신고된 거 있어?", at(11, 21), at(11, 23), TO_119, REPORTED),
    ("anything this weekend?", at(11, 21), at(11, 23), (), ()),
    ("what happened last weekend?", at(11, 21), at(11, 23), (), ()),
    ("이번 달에 가스 경보 있었어?", at(11, 1), at(12, 1), ("gas",), ()),
    ("anything this month?", at(11, 1), at(12, 1), (), ()),
    ("지난달에 취소된 거 있어?", at(10, 1), at(11, 1), (), CANCELLED),
    # since ..., spans back from now
    ("월요일부터 신고된 거 있어?", at(11, 23), NOW, (), REPORTED),
    ("anything reported since Monday?", at(11, 23), NOW, (), REPORTED),
    ("since yesterday any falls?", at(11, 24), NOW, ("accident",), ()),
    ("최근 3일 동안 무슨 일?", back(72), NOW, (), ()),
    ("any alarms in the last 3 days?", back(72), NOW, (), ()),
    ("지난 24시간 동안 경보 있었어?", back(24), NOW, (), ()),
    ("anything in the past 2 weeks?", back(24 * 14), NOW, (), ()),
    ("최근에 무슨 일 있었어?", back(24 * 7), NOW, (), ()),
    ("지난 일주일 동안 경찰에 신고된 거?", back(24 * 7), NOW, ("crime",), REPORTED),
    # classes
    ("어제 화재 경보 울렸어?", at(11, 24), at(11, 25), ("fire",), ()),
    ("any smoke alarm yesterday?", at(11, 24), at(11, 25), ("fire",), ()),
    ("어제 불났어?", at(11, 24), at(11, 25), ("fire",), ()),
    ("오늘 가스 새는 소리 있었어?", at(11, 25), at(11, 26), ("gas",), ()),
    ("carbon monoxide alarm today?", at(11, 25), at(11, 26), ("gas",), ()),
    ("어제 유리 깨지는 소리 났어?", at(11, 24), at(11, 25), ("crime",), ()),
    ("any break-in last night?", at(11, 24, 18), at(11, 25, 6), ("crime",), ()),
    ("지난주에 비명 소리 있었어?", at(11, 16), at(11, 23), ("crime",), ()),
    ("did grandma fall yesterday?", at(11, 24), at(11, 25), ("accident",), ()),
    ("어제 낙상 사고 있었어?", at(11, 24), at(11, 25), ("accident",), ()),
    ("어제 갇혀서 문 두드리는 소리 있었어?", at(11, 24), at(11, 25), ("trapped",), ()),
    ("오늘 감전 사고 있었어?", at(11, 25), at(11, 26), ("electric",), ()),
    ("electrical sparks this morning?", at(11, 25, 6), at(11, 25, 12), ("electric",), ()),
    ("어제 살려달라는 소리 있었어?", at(11, 24), at(11, 25), ("help",), ()),
    ("anyone calling for help last night?", at(11, 24, 18), at(11, 25, 6), ("help",), ()),
    ("어제 응급 상황 있었어?", at(11, 24), at(11, 25), ("medical",), ()),
    ("any seizure yesterday?", at(11, 24), at(11, 25), ("medical",), ()),
    ("불이 꺼졌는지 어제", at(11, 24), at(11, 25), (), ()),  # 불 as light: not a fire word
    # states and agencies
    ("어제 취소된 거 있어?", at(11, 24), at(11, 25), (), CANCELLED),
    ("any false alarms this week?", at(11, 23), at(11, 30), (), CANCELLED),
    ("오늘 대기 중인 거 있어?", at(11, 25), at(11, 26), (), PENDING),
    ("anything pending today?", at(11, 25), at(11, 26), (), PENDING),
    ("이번 주에 신고 실패한 거 있어?", at(11, 23), at(11, 30), (), FAILED),
    ("any failed reports this week?", at(11, 23), at(11, 30), (), FAILED),
    ("was anything reported to 112 last week?", at(11, 16), at(11, 23), ("crime",), REPORTED),
    ("어제 119 불렀어?", at(11, 24), at(11, 25), TO_119, REPORTED),
    ("did the fire department come yesterday?", at(11, 24), at(11, 25), TO_119, REPORTED),
    ("지난 주말에 화재로 119 신고됐어?", at(11, 21), at(11, 23), ("fire",), REPORTED),
    ("어제 화재 경보 취소했어?", at(11, 24), at(11, 25), ("fire",), CANCELLED),
]

NOT_UNDERSTOOD = [
    ("무슨 일 있었어?", "ko"),
    ("What happened?", "en"),
    ("any fire alarms?", "en"),
    ("2019년에 화재 있었어?", "ko"),
    ("최근 9999일 동안 무슨 일?", "ko"),  # longer than a year
    ("25시에 무슨 일?", "ko"),  # no such hour
    ("", "en"),
    ("asdf qwerty", "en"),
]


def test_the_table_is_large_enough_and_covers_both_languages() -> None:
    assert len(CASES) + len(NOT_UNDERSTOOD) >= 60
    languages = {parse_question(q, NOW, SEOUL).language for q, *_ in CASES}
    assert languages == {"ko", "en"}


@pytest.mark.parametrize(("question", "start", "end", "classes", "states"), CASES, ids=[c[0] for c in CASES])
def test_a_question_is_read_as_its_filter(
    question: str, start: datetime, end: datetime, classes: tuple[str, ...], states: tuple[IncidentState, ...]
) -> None:
    query = parse_question(question, NOW, SEOUL)
    assert isinstance(query, HistoryQuery), query
    assert (query.start, query.end) == (start, end)
    assert (query.classes, query.states) == (classes, states)
    assert query.start.utcoffset() == timedelta(hours=9)


@pytest.mark.parametrize(("question", "language"), NOT_UNDERSTOOD, ids=[q or "<empty>" for q, _ in NOT_UNDERSTOOD])
def test_a_question_without_a_time_it_can_tell_is_not_guessed(question: str, language: str) -> None:
    assert parse_question(question, NOW, SEOUL) == NotUnderstood(language)  # type: ignore[arg-type]


def test_the_period_is_the_questions_own_words() -> None:
    def period(question: str) -> str:
        query = parse_question(question, NOW, SEOUL)
        assert isinstance(query, HistoryQuery)
        return query.period

    assert period("어젯밤에 무슨 일 있었어?") == "어젯밤"
    assert period("월요일부터 신고된 거 있어?") == "월요일부터"
    assert period("어제  새벽 3시에 뭐였어?") == "어제 새벽 3시"
    assert period("What woke grandma at 3am?") == "at 3am"
    assert period("Anything since Monday?") == "since Monday"


def test_weekends_on_a_weekend_and_weeks_across_a_month() -> None:
    sunday = datetime(2026, 11, 29, 9, 0, tzinfo=SEOUL)
    this = parse_question("주말에 무슨 일 있었어?", sunday, SEOUL)
    last = parse_question("지난 주말에 무슨 일 있었어?", sunday, SEOUL)
    assert isinstance(this, HistoryQuery) and isinstance(last, HistoryQuery)
    assert (this.start, this.end) == (at(11, 28), at(11, 30))
    assert (last.start, last.end) == (at(11, 21), at(11, 23))
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=SEOUL)
    same_day = parse_question("월요일에 무슨 일 있었어?", monday, SEOUL)
    assert isinstance(same_day, HistoryQuery) and same_day.start == at(11, 30)
    january = datetime(2027, 1, 5, 12, 0, tzinfo=SEOUL)
    last_month = parse_question("지난달", january, SEOUL)
    assert isinstance(last_month, HistoryQuery)
    assert (last_month.start, last_month.end) == (at(12, 1), datetime(2027, 1, 1, tzinfo=SEOUL))


def test_times_are_in_the_given_zone() -> None:
    utc = time_zone("UTC")
    query = parse_question("yesterday", NOW, utc)
    assert isinstance(query, HistoryQuery)
    assert query.start == datetime(2026, 11, 24, tzinfo=utc) and query.start.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        time_zone("Mars/Olympus")


def test_every_example_offered_is_understood() -> None:
    for language, examples in EXAMPLES.items():
        for example in examples:
            query = parse_question(example, NOW, SEOUL)
            assert isinstance(query, HistoryQuery) and query.language == language, example


# --- answers ---------------------------------------------------------------------------------------


def event(class_key: str, state: IncidentState, when: datetime) -> HistoryEvent:
    return HistoryEvent("incident", uuid.uuid4(), class_key, state, when, 0.9)


LAST_NIGHT = [
    event("accident", IncidentState.DISPATCHED, at(11, 25, 2, 40)),
    event("fire", IncidentState.CANCELLED, at(11, 24, 23, 14)),
]


def query(question: str) -> HistoryQuery:
    parsed = parse_question(question, NOW, SEOUL)
    assert isinstance(parsed, HistoryQuery)
    return parsed


def test_an_answer_lists_the_events_oldest_first_in_the_questions_language() -> None:
    assert render_answer(query("어젯밤에 무슨 일 있었어?"), LAST_NIGHT) == (
        "어젯밤 (11월 24일 18:00 ~ 11월 25일 06:00): 2건이 있었어요 — "
        "23:14 화재 경보 (취소됨), 02:40 낙상·사고 (119에 신고됨)."
    )
    assert render_answer(query("what happened last night?"), LAST_NIGHT) == (
        "Last night (24 Nov 18:00 – 25 Nov 06:00): 2 events — "
        "23:14 fire alarm (cancelled), 02:40 fall or accident (reported to 119)."
    )
    crime = [event("crime", IncidentState.DISPATCHING, at(11, 24, 3, 5))]
    assert render_answer(query("any break-in this week?"), crime) == (
        "This week (23 Nov 00:00 – 30 Nov 00:00): 1 event — Tue 24 Nov 03:05 break-in or scream (being reported to 112)."
    )


def test_nothing_heard_names_the_range_and_what_was_looked_for() -> None:
    assert render_answer(query("어젯밤에 무슨 일 있었어?"), []) == (
        "어젯밤 (11월 24일 18:00 ~ 11월 25일 06:00): 들린 일이 없었어요."
    )
    assert render_answer(query("what woke grandma at 3am?"), []) == (
        "At 3am (25 Nov 02:00 – 04:00): nothing was heard."
    )
    assert render_answer(query("지난 주말에 119 신고된 거 있어?"), []) == (
        "지난 주말 (11월 21일 00:00 ~ 11월 23일 00:00): 찾는 일(119, 신고됨)은 없었어요."
    )
    assert render_answer(query("any fire or gas alarms cancelled last week?"), []) == (
        "Last week (16 Nov 00:00 – 23 Nov 00:00): nothing was heard matching gas alarm or fire alarm, cancelled."
    )


def test_a_long_answer_names_ten_and_counts_the_rest() -> None:
    many = [event("fire", IncidentState.CANCELLED, at(11, 23) + timedelta(hours=i)) for i in range(13)]
    assert render_answer(query("이번 주에 무슨 일?"), many).endswith("외 3건.")
    assert render_answer(query("this week?"), many).endswith(", and 3 more.")


def test_not_understood_is_honest_and_gives_examples() -> None:
    assert not_understood("en").startswith("I could not tell which time you mean.")
    assert "“What happened last night?”" in not_understood("en")
    assert not_understood("ko").startswith("언제를 말씀하시는지 알 수 없었어요.")
    assert "“어젯밤에 무슨 일 있었어?”" in not_understood("ko")


def test_a_filter_matches_classes_and_states() -> None:
    reported_fires = query("지난 주말에 화재로 119 신고됐어?")
    assert reported_fires.matches("fire", IncidentState.DISPATCHED)
    assert not reported_fires.matches("fire", IncidentState.CANCELLED)
    assert not reported_fires.matches("gas", IncidentState.DISPATCHED)
    assert query("anything today?").matches("crime", IncidentState.PENDING)
