"""The learning rule and its bounds, as tables: how many similar false alarms make a step, how
big a step is, and the ceiling a home's threshold never passes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.incidents.threshold_learning import FalseAlarm, LearningBounds, LearningPolicy, Lesson, lesson

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)
BEEP = [1.0, 0.5, 0.0, -0.5, -1.0, 0.0]
ALSO_BEEP = [0.95, 0.55, 0.0, -0.5, -1.0, 0.05]  # similarity about 0.998
OTHER = [-1.0, 0.0, 1.0, 0.0, -1.0, 1.0]


def alarms(*signatures: list[float] | None) -> list[FalseAlarm]:
    """False alarms, newest first, an hour apart."""
    return [FalseAlarm(uuid.uuid4(), NOW - timedelta(hours=i), sig) for i, sig in enumerate(signatures)]


def taught(
    latest: list[float] | None, *earlier: list[float] | None, current: float = 0.5, base: float = 0.5,
    bounds: LearningBounds = LearningBounds(),
) -> Lesson | None:
    first, *rest = alarms(latest, *earlier)
    return lesson(first, rest, current=current, base=base, bounds=bounds, min_similarity=0.9)


@pytest.mark.parametrize(
    ("earlier", "steps"),
    [
        ((), False),
        ((BEEP,), False),
        ((BEEP, ALSO_BEEP), True),  # three alike, the latest included
        ((BEEP, OTHER, OTHER), False),  # two alike: other sounds do not count
        ((BEEP, None), False),  # an incident without a signature is no evidence
        ((OTHER, BEEP, ALSO_BEEP, OTHER), True),
    ],
)
def test_three_similar_false_alarms_make_a_step(earlier: tuple[list[float] | None, ...], steps: bool) -> None:
    result = taught(BEEP, *earlier)
    assert (result is not None and result.raises) is steps


def test_the_step_is_a_tenth_of_the_way_to_one_and_names_its_evidence() -> None:
    result = taught(BEEP, BEEP, ALSO_BEEP)
    assert result is not None
    assert (result.threshold_from, result.threshold_to, result.ceiling) == (0.5, 0.55, 0.65)
    assert len(result.similar) == 3 and result.similar[0][1] == 1.0
    assert all(value >= 0.9 for _, value in result.similar)


def test_a_false_alarm_without_a_signature_teaches_nothing() -> None:
    assert taught(None, BEEP, BEEP, BEEP) is None


@pytest.mark.parametrize(
    ("base", "current", "expected_to"),
    [
        (0.5, 0.5, 0.55),
        (0.5, 0.6, 0.64),
        (0.5, 0.64, 0.65),  # the step stops at the ceiling
        (0.5, 0.65, 0.65),  # at the ceiling: nothing changes
        (0.94, 0.94, 0.946),  # a model whose threshold is high moves little
        (0.5, 0.9, 0.65),  # a learned value above today's ceiling (the base moved) counts as the ceiling
        (0.7, 0.55, 0.73),  # below today's base (a new model): it starts from the base
    ],
)
def test_steps_stay_within_the_ceiling(base: float, current: float, expected_to: float) -> None:
    result = taught(BEEP, BEEP, BEEP, base=base, current=current)
    assert result is not None and result.threshold_to == expected_to
    assert result.threshold_to <= result.ceiling


def test_at_the_ceiling_the_lesson_does_not_raise() -> None:
    result = taught(BEEP, BEEP, BEEP, current=0.65)
    assert result is not None and not result.raises


def test_fire_and_gas_need_five_and_stop_lower() -> None:
    policy = LearningPolicy()
    fire, crime = policy.bounds("fire"), policy.bounds("crime")
    assert (fire.min_cancels, fire.ceiling(0.5)) == (5, 0.6)
    assert policy.bounds("gas") == fire
    assert (crime.min_cancels, crime.ceiling(0.5)) == (3, 0.65)
    assert taught(BEEP, BEEP, BEEP, BEEP, bounds=fire) is None  # four are not enough
    five = taught(BEEP, BEEP, BEEP, BEEP, BEEP, bounds=fire)
    assert five is not None and (five.threshold_from, five.threshold_to) == (0.5, 0.55)


def test_a_home_never_becomes_deaf() -> None:
    """However many steps, every class stays within its ceiling, below 1."""
    policy = LearningPolicy()
    for key in ("fire", "gas", "crime", "help", "medical"):
        bounds, base = policy.bounds(key), 0.5
        current = base
        for _ in range(50):
            current = bounds.next_step(current, base)
        assert current == bounds.ceiling(base) <= 0.65 < 1.0


@pytest.mark.parametrize(
    "bad",
    [{"classes": {"normal": {}}}, {"classes": {"toaster": {}}}, {"default": {"min_cancels": 1}},
     {"default": {"max_share": 0.9}}, {"similarity": 0}],
)
def test_the_policy_refuses_what_could_deafen_or_makes_no_sense(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LearningPolicy.model_validate(bad)
