"""The daycare rule on hand-made tag sequences: raised only with all three cues within the span."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.daycare import ChildSafetyRule, Cue, DaycarePolicy, cue_levels
from shared.incident_state import IncidentKind

CRY = {"Crying, sobbing": 0.5}
SHOUT = {"Shout": 0.5}
BLOW = {"Slap, smack": 0.5}
POLICY = DaycarePolicy(crying_threshold=0.2, shouting_threshold=0.2, impact_threshold=0.2, children_weight=1.0,
                       smoothing_windows=1, min_windows=2, span_s=10.0, refractory_s=60.0)  # fmt: skip


def run(rule: ChildSafetyRule, windows: list[dict[str, float]], start_s: float = 2.0) -> list[float]:
    """The stream times of the raises, one window every 0.5 s."""
    raised = []
    for i, tags in enumerate(windows):
        raised += [event.stream_time_s for event in rule.update(start_s + 0.5 * i, tags)]
    return raised


def test_crying_shouting_and_blows_together_raise_child_safety() -> None:
    rule = ChildSafetyRule(POLICY)
    events = []
    for i, tags in enumerate([CRY, CRY, SHOUT, SHOUT, BLOW, BLOW]):
        events += rule.update(2.0 + 0.5 * i, tags)
    assert len(events) == 1
    event = events[0]
    assert event.kind is IncidentKind.CHILD_SAFETY
    assert event.emergency_class.key == "crime"  # reported to 112 by the usual routing
    assert event.stream_time_s == 4.5  # the window where the last cue was heard a second time
    assert event.confidence == pytest.approx(0.5)


@pytest.mark.parametrize("windows", [
    [CRY] * 20,  # crying alone
    [CRY, SHOUT] * 10,  # a crying child and a raised voice, no blows
    [SHOUT, BLOW] * 10,  # shouting and hammering, nobody crying
    [BLOW] * 20,  # blows alone
    [{**CRY, **SHOUT, **BLOW}],  # all three, but in one window only: min_windows is 2
], ids=["crying", "crying+shouting", "shouting+blows", "blows", "one-window"])
def test_fewer_than_three_cues_raise_nothing(windows: list[dict[str, float]]) -> None:
    assert run(ChildSafetyRule(POLICY), windows) == []


def test_the_cues_must_fall_within_the_span() -> None:
    quiet: dict[str, float] = {}
    # Crying, then 10 s of nothing, then shouting and blows: the crying has left the span.
    apart = [CRY, CRY] + [quiet] * 20 + [SHOUT, SHOUT, BLOW, BLOW]
    assert run(ChildSafetyRule(POLICY), apart) == []
    # The same with 5 s of nothing: all within 10 s.
    near = [CRY, CRY] + [quiet] * 10 + [SHOUT, SHOUT, BLOW, BLOW]
    assert run(ChildSafetyRule(POLICY), near) == [2.0 + 0.5 * 15]


def test_children_playing_is_not_adult_shouting() -> None:
    play = {"Shout": 0.5, "Children shouting": 0.4}
    assert cue_levels(play, children_weight=1.0)[Cue.ADULT_SHOUTING] == pytest.approx(0.1)
    assert run(ChildSafetyRule(POLICY), [CRY, CRY, play, play, BLOW, BLOW] * 3) == []
    # Without the children's tags the same shout is an adult's.
    assert cue_levels(play, children_weight=0.0)[Cue.ADULT_SHOUTING] == pytest.approx(0.5)


def test_smoothing_needs_the_cue_over_several_windows() -> None:
    smoothed = POLICY.model_copy(update={"smoothing_windows": 3, "min_windows": 1})
    # One loud window of each cue among quiet ones averages to a third: under 0.2.
    spiky = [CRY, {}, {}, SHOUT, {}, {}, BLOW, {}, {}]
    assert run(ChildSafetyRule(smoothed), spiky) == []
    steady = [{**CRY, **SHOUT, **BLOW}] * 3
    assert run(ChildSafetyRule(smoothed), steady) == [3.0]


def test_a_gap_in_the_stream_restarts_the_average() -> None:
    rule = ChildSafetyRule(POLICY.model_copy(update={"smoothing_windows": 2, "min_windows": 1}))
    all_three = {**CRY, **SHOUT, **BLOW}
    assert rule.update(2.0, all_three) == []
    assert rule.update(4.0, all_three) == []  # windows were lost: one window in hand again
    assert len(rule.update(4.5, all_three)) == 1


def test_one_raise_per_refractory_period() -> None:
    all_three = {**CRY, **SHOUT, **BLOW}
    rule = ChildSafetyRule(POLICY)
    raised = run(rule, [all_three] * 200)  # 100 s of it
    assert raised == [2.5, 2.5 + 60.0]


def test_time_must_go_forward_and_the_policy_is_checked() -> None:
    rule = ChildSafetyRule(POLICY)
    rule.update(2.0, CRY)
    with pytest.raises(ValueError, match="stream time"):
        rule.update(2.0, CRY)
    with pytest.raises(ValidationError):
        DaycarePolicy(crying_threshold=0.0)
    with pytest.raises(ValidationError):
        DaycarePolicy(unknown=1)  # type: ignore[call-arg]


def test_the_sounds_cues_do_not_count_where_the_model_hears_music() -> None:
    """A melody's held, gliding notes and sharp onsets sound like a cry, a voice and blows to the
    sound's cues; where the model's tags say music, only the tags count."""
    heard = {Cue.CRYING: 0.9, Cue.ADULT_SHOUTING: 0.9, Cue.IMPACTS: 0.9}
    policy = POLICY.model_copy(update={"music_veto": 0.5})
    for music, raises in ((0.7, 0), (0.2, 1)):
        rule = ChildSafetyRule(policy)
        assert len([e for i in range(4) for e in rule.update(2.0 + 0.5 * i, {"Music": music}, heard)]) == raises
    # The tags of a window with music still count.
    rule = ChildSafetyRule(policy)
    raised = [e for i in range(4) for e in rule.update(2.0 + 0.5 * i, {"Music": 0.7, **CRY, **SHOUT, **BLOW}, heard)]
    assert len(raised) == 1 and raised[0].confidence == pytest.approx(0.5)
