"""shared.incidents.evidence: the evidence mark and the shortening policy, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.incident_state import EvidenceMark
from shared.incidents.evidence import (
    DEFAULT_SHORTENING,
    EvidenceFacts,
    EvidencePolicy,
    FadedRule,
    ShorteningRule,
    judge_evidence,
    shortened_deadline,
)

GROWING, STEADY, FADED = EvidenceMark.GROWING, EvidenceMark.STEADY, EvidenceMark.FADED


@pytest.mark.parametrize(
    ("facts", "mark"),
    [
        (EvidenceFacts("fire"), STEADY),  # nothing heard yet
        (EvidenceFacts("fire", heard_s=30, quiet_s=0), STEADY),  # the alarm goes on, nothing new
        (EvidenceFacts("fire", {"fire": 1}, heard_s=5), GROWING),  # detected again
        (EvidenceFacts("crime", {"help": 1}, heard_s=5), GROWING),  # a second emergency class
        (EvidenceFacts("crime", spoken=True, heard_s=5), GROWING),  # a distress phrase
        (EvidenceFacts("fire", {"fire": 0}, heard_s=30, quiet_s=30), FADED),  # zero counts are none
        (EvidenceFacts("fire", heard_s=30, quiet_s=21), FADED),  # 70 % quiet: faded
        (EvidenceFacts("fire", heard_s=30, quiet_s=20.9), STEADY),  # just under 70 %
        (EvidenceFacts("fire", heard_s=14.5, quiet_s=14.5), STEADY),  # under 25 % of 60 s heard: too soon
        (EvidenceFacts("fire", heard_s=15, quiet_s=15), FADED),  # 25 % of the countdown heard, all quiet
        (EvidenceFacts("fire", {"fire": 1}, heard_s=60, quiet_s=60), GROWING),  # growing wins over quiet
    ],
)
def test_evidence_mark(facts: EvidenceFacts, mark: EvidenceMark) -> None:
    assert judge_evidence(facts, 60.0) is mark


def test_faded_rule_is_configurable() -> None:
    facts = EvidenceFacts("fire", heard_s=10, quiet_s=6)
    assert judge_evidence(facts, 60.0) is STEADY
    assert judge_evidence(facts, 60.0, FadedRule(share=0.5, min_heard_share=0.1)) is FADED


def test_facts_summary() -> None:
    facts = EvidenceFacts("crime", {"crime": 2, "help": 1, "fire": 0}, frozenset(), True, 12.04, 3.01,
                          "heard: '살려주세요' ×2")  # fmt: skip
    assert facts.classes_heard == ["crime", "help"]
    assert facts.to_json() == {
        "renewals": {"crime": 2, "help": 1}, "classes_heard": ["crime", "help"], "alarm_patterns": [],
        "spoken": True, "heard_s": 12.0, "quiet_share": 0.25, "phrases": "heard: '살려주세요' ×2",
    }  # fmt: skip


DETECTED = datetime(2026, 12, 19, 9, 0, 0, tzinfo=UTC)
DEADLINE = DETECTED + timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return DETECTED + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("facts", "now_s", "expected_s"),
    [
        # fire: its alarm pattern confirmed and detected again -> detected_at + 30 s
        (EvidenceFacts("fire", {"fire": 1}, frozenset({"fire"})), 8.0, 30.0),
        (EvidenceFacts("fire", {"fire": 1}, frozenset({"fire"})), 45.0, 45.0),  # past 30 s: now
        (EvidenceFacts("fire", {"fire": 1}), 8.0, None),  # no alarm pattern: the full countdown
        (EvidenceFacts("fire", {}, frozenset({"fire"})), 8.0, None),  # the pattern alone is not a second detection
        (EvidenceFacts("fire", {"gas": 2}, frozenset({"fire"})), 8.0, None),  # another class is not fire again
        # crime: a second crime detection (a scream after breaking glass)
        (EvidenceFacts("crime", {"crime": 1}), 5.0, 30.0),
        (EvidenceFacts("crime", {"help": 1}), 5.0, None),
        (EvidenceFacts("crime", spoken=True), 5.0, None),
        # every other class keeps its full countdown
        (EvidenceFacts("gas", {"gas": 3}, frozenset({"gas"})), 5.0, None),
        (EvidenceFacts("accident", {"accident": 3}), 5.0, None),
        (EvidenceFacts("help", {"help": 3}, spoken=True), 5.0, None),
        (EvidenceFacts("medical", {"medical": 3}), 5.0, None),
        # never later: a deadline already at or before the target stays (a confirm set it to now)
        (EvidenceFacts("crime", {"crime": 1}), 70.0, None),
    ],
)
def test_default_shortening(facts: EvidenceFacts, now_s: float, expected_s: float | None) -> None:
    result = shortened_deadline(
        DEFAULT_SHORTENING, facts, detected_at=DETECTED, deadline_at=DEADLINE, now=at(now_s), countdown_s=60.0
    )
    assert (None if result is None else result.deadline_at) == (None if expected_s is None else at(expected_s))
    if result is not None:
        assert facts.class_key in result.reason and "50%" in result.reason


def test_shortening_never_moves_a_deadline_later() -> None:
    facts = EvidenceFacts("crime", {"crime": 1})
    confirmed = at(10.0)  # a confirm moved it to "now" at 10 s
    assert shortened_deadline(
        DEFAULT_SHORTENING, facts, detected_at=DETECTED, deadline_at=confirmed, now=at(12.0), countdown_s=60.0
    ) is None


def test_shortening_scales_with_the_countdown_and_can_be_turned_off() -> None:
    facts = EvidenceFacts("fire", {"fire": 2}, frozenset({"fire"}))
    short = shortened_deadline(
        DEFAULT_SHORTENING, facts, detected_at=DETECTED, deadline_at=at(16.0), now=at(3.0), countdown_s=16.0
    )
    assert short is not None and short.deadline_at == at(8.0)
    off = EvidencePolicy.model_validate({"shortening": {}})
    assert shortened_deadline(
        off.shortening, facts, detected_at=DETECTED, deadline_at=DEADLINE, now=at(3.0), countdown_s=60.0
    ) is None


def test_a_stricter_rule_needs_more_renewals() -> None:
    rules = {"crime": ShorteningRule(countdown_share=0.25, renewals=2)}
    once, twice = EvidenceFacts("crime", {"crime": 1}), EvidenceFacts("crime", {"crime": 2})
    common = {"detected_at": DETECTED, "deadline_at": DEADLINE, "now": at(1.0), "countdown_s": 60.0}
    assert shortened_deadline(rules, once, **common) is None
    result = shortened_deadline(rules, twice, **common)
    assert result is not None and result.deadline_at == at(15.0) and "2 times" in result.reason


def test_policy_defaults_and_validation() -> None:
    policy = EvidencePolicy()
    assert set(policy.shortening) == {"fire", "crime"}
    assert policy.shortening["fire"].needs_pattern and not policy.shortening["crime"].needs_pattern
    assert (policy.faded.share, policy.flush_s) == (0.7, 2.0)
    for bad in (
        {"shortening": {"normal": {"countdown_share": 0.5}}},  # never an incident
        {"shortening": {"flood": {"countdown_share": 0.5}}},  # no such class
        {"shortening": {"fire": {"countdown_share": 1.5}}},  # later is never allowed
        {"shortening": {"fire": {"countdown_share": 0.5, "renewals": 0}}},
        {"faded": {"share": 0}},
        {"flush_s": 0},
    ):
        with pytest.raises(ValidationError):
            EvidencePolicy.model_validate(bad)
