"""Households: devices of one home that corroborate each other's detections.

* :mod:`~shared.household.board`: what each listening device heard in the last minute
  (:class:`ActivityBoard`, Redis or in-process).
* :mod:`~shared.household.corroboration`: the pure rule, does another device support a
  detection (:func:`judge_corroboration`), and the sentence for a dispatcher (:func:`where_heard`).
* :mod:`~shared.household.record`: the judgement written to the incident, linked to the other
  devices' incidents, and the earlier deadline it may earn.
* :mod:`~shared.household.membership`: creating, joining and leaving a household.

docs/evidence.md explains the policy in plain words.
"""

from shared.household.board import (
    BOARD_TTL_S,
    ActivityBoard,
    LocalActivityBoard,
    RedisActivityBoard,
    WindowSummary,
    create_activity_board,
)
from shared.household.corroboration import (
    Corroboration,
    CorroborationPolicy,
    Peer,
    Support,
    judge_corroboration,
    place_phrase,
    where_heard,
)
from shared.household.record import CorroborationRecorded, household_peers, record_corroboration

__all__ = [
    "BOARD_TTL_S",
    "ActivityBoard",
    "Corroboration",
    "CorroborationPolicy",
    "CorroborationRecorded",
    "LocalActivityBoard",
    "Peer",
    "RedisActivityBoard",
    "Support",
    "WindowSummary",
    "create_activity_board",
    "household_peers",
    "judge_corroboration",
    "place_phrase",
    "record_corroboration",
    "where_heard",
]
