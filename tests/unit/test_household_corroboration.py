"""Household fusion's rule (shared/household/corroboration.py) as tables: who was listening,
who supports a detection and how, what a dispatcher reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.household import Corroboration, CorroborationPolicy, Peer, WindowSummary, judge_corroboration, where_heard

T = 1_800_000_000.0  # the detection, epoch seconds
POLICY = CorroborationPolicy()
THRESHOLD = 0.4
KITCHEN, BEDROOM, HALL = (uuid.UUID(int=n) for n in (1, 2, 3))
PEERS = [Peer(BEDROOM, "bedroom"), Peer(HALL, None, "Kim Soon-ja")]
NOW = datetime(2027, 1, 1, tzinfo=UTC)


def windows(device: uuid.UUID, start: float, end: float, level: float = -40.0, **scores: float) -> list[WindowSummary]:
    """A window every 0.5 s from ``start`` to ``end`` seconds after the detection."""
    count = round((end - start) / 0.5) + 1
    return [WindowSummary(str(device), T + start + 0.5 * i, level, dict(scores)) for i in range(count)]


def usual(device: uuid.UUID, level: float = -40.0) -> list[WindowSummary]:
    """The 30 s before the span: the device's usual level."""
    return windows(device, -33.0, -3.5, level)


def judge(*heard: list[WindowSummary]) -> Corroboration:
    flat = sorted((s for group in heard for s in group), key=lambda s: s.heard_at)
    return judge_corroboration("fire", THRESHOLD, T, PEERS, flat, POLICY, NOW)


def test_a_peer_hearing_the_same_class_at_half_its_threshold_supports_it() -> None:
    judged = judge(usual(BEDROOM), windows(BEDROOM, -3, 3, fire=0.21))
    (support,) = judged.supporting
    assert (support.device_id, support.room, support.how, support.detected) == (str(BEDROOM), "bedroom", "same_class", False)
    assert support.score == pytest.approx(0.21) and support.loud_db == pytest.approx(0.0)
    assert judged.peers_listening == 1 and not judged.only_this_device and not judged.detected_by_peer


def test_a_peer_whose_score_reached_the_threshold_detected_it_too() -> None:
    judged = judge(usual(BEDROOM), windows(BEDROOM, -3, 3, fire=0.1), windows(BEDROOM, 1.0, 1.0, fire=0.45))
    assert judged.supporting[0].detected and judged.detected_by_peer


def test_the_alarm_rhythm_on_a_peer_is_the_same_class_whatever_its_score() -> None:
    rhythm = [WindowSummary(str(BEDROOM), T + 0.5, -40.0, {}, ("fire",))]
    judged = judge(usual(BEDROOM), windows(BEDROOM, -3, 3), rhythm)
    assert judged.supporting[0].how == "same_class" and not judged.supporting[0].detected


@pytest.mark.parametrize(
    ("usual_db", "heard_db", "loud"),
    [
        (-40.0, -29.0, True),  # 11 dB over the usual level
        (-40.0, -31.0, False),  # 9 dB: not well above it
        (-70.0, -45.0, False),  # a silent room: counted from the -50 dBFS floor, 5 dB
        (-70.0, -39.0, True),  # 11 dB over the floor
        (-20.0, -12.0, False),  # a loud home (television): 8 dB more is not news
    ],
)
def test_loud_support_is_measured_against_the_peers_usual_level(usual_db: float, heard_db: float, loud: bool) -> None:
    judged = judge(usual(BEDROOM, usual_db), windows(BEDROOM, -3, 3, usual_db), windows(BEDROOM, 0.5, 0.5, heard_db))
    assert [s.how for s in judged.supporting] == (["loud"] if loud else [])
    assert judged.peers_listening == 1 and judged.only_this_device is not loud


def test_without_a_usual_level_the_floor_stands_for_it() -> None:
    # The peer started streaming at the detection: less than 2 s before the span.
    judged = judge(windows(BEDROOM, -3, 3, -45.0), windows(BEDROOM, 0.0, 0.0, -38.0))
    assert judged.supporting[0].how == "loud" and judged.supporting[0].loud_db == pytest.approx(12.0)


def test_windows_outside_the_span_do_not_count() -> None:
    judged = judge(usual(BEDROOM), windows(BEDROOM, -3, 3), windows(BEDROOM, 3.5, 6, fire=0.9))
    assert judged.peers_listening == 1 and judged.only_this_device


def test_no_peer_listening_claims_nothing() -> None:
    judged = judge(usual(BEDROOM))  # it stopped streaming before the span
    assert judged.peers_listening == 0 and judged.supporting == () and not judged.only_this_device
    assert judged.to_json()["only_this_device"] is False


def test_own_windows_and_strangers_are_not_peers() -> None:
    judged = judge(windows(KITCHEN, -3, 3, fire=0.9), windows(uuid.UUID(int=9), -3, 3, fire=0.9))
    assert judged.peers_listening == 0


def test_same_class_comes_before_loud_then_by_score() -> None:
    judged = judge(
        usual(BEDROOM), windows(BEDROOM, -3, 3, -20.0), usual(HALL), windows(HALL, -3, 3, fire=0.3)
    )
    assert [(s.device_id, s.how) for s in judged.supporting] == [(str(HALL), "same_class"), (str(BEDROOM), "loud")]
    assert judged.to_json()["supporting"][0] == {
        "device_id": str(HALL), "room": None, "name": "Kim Soon-ja", "class": "fire", "score": 0.3,
        "loud_db": 0.0, "how": "same_class", "detected": False, "incident_id": None,
    }  # fmt: skip


def test_a_peers_own_incident_links_and_counts_as_its_detection() -> None:
    judged = judge(usual(BEDROOM), windows(BEDROOM, -3, 3))  # listening, heard nothing
    assert judged.only_this_device
    linked = judged.linked({str(BEDROOM): "b-incident", str(HALL): "h-incident"}, {str(HALL): PEERS[1]})
    assert linked.linked_incidents == ("b-incident", "h-incident") and linked.detected_by_peer
    assert linked.peers_listening == 2 and not linked.only_this_device  # the hall's board windows were lost
    hall = next(s for s in linked.supporting if s.device_id == str(HALL))
    assert (hall.how, hall.incident_id, hall.name) == ("same_class", "h-incident", "Kim Soon-ja")


def test_the_policy_keeps_what_corroboration_reads_within_the_boards_memory() -> None:
    with pytest.raises(ValidationError, match="settle_s"):
        CorroborationPolicy(span_s=5.0, settle_s=4.0)
    with pytest.raises(ValidationError, match="memory"):
        CorroborationPolicy(baseline_s=55.0)


SUPPORT = {"room": "bedroom", "name": None, "how": "same_class"}


@pytest.mark.parametrize(
    ("own_room", "corroboration", "sentence"),
    [
        ("kitchen", {"peers_listening": 1, "supporting": [SUPPORT]}, "heard in the kitchen and the bedroom"),
        ("kitchen", {"peers_listening": 2, "supporting": [SUPPORT, {**SUPPORT, "room": "hall"}]},
         "heard in the kitchen, the bedroom and the hall"),
        ("kitchen", {"peers_listening": 1, "supporting": [{**SUPPORT, "how": "loud"}]},
         "heard in the kitchen; a loud sound at the same moment in the bedroom"),
        ("kitchen", {"peers_listening": 1, "supporting": [{**SUPPORT, "room": None, "name": "Kim"}]},
         "heard in the kitchen and on Kim's device"),
        (None, {"peers_listening": 1, "supporting": [{**SUPPORT, "room": "거실"}]}, "heard on this device and in 거실"),
        ("Grandma's room", {"peers_listening": 1, "supporting": [{**SUPPORT, "room": None}]},
         "heard in Grandma's room and on another device"),
        ("kitchen", {"peers_listening": 1, "supporting": [], "only_this_device": True},
         "heard only in the kitchen: the other device listening heard nothing like it"),
        ("kitchen", {"peers_listening": 2, "supporting": [], "only_this_device": True},
         "heard only in the kitchen: the 2 other devices listening heard nothing like it"),
        ("kitchen", {"peers_listening": 0, "supporting": []},
         "heard in the kitchen; no other device of the home was listening"),
        ("kitchen", None, None),
    ],
)
def test_what_the_dispatcher_reads(own_room: str | None, corroboration: dict | None, sentence: str | None) -> None:
    assert where_heard(own_room, None, corroboration) == sentence
