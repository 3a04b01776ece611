"""shared.incident_state: the transition tables, the action outcomes, the wire strings."""

from __future__ import annotations

import itertools

import pytest

from shared.incident_state import (
    DELIVERY_MOVES,
    INCIDENT_MOVES,
    OPEN_DELIVERY_STATES,
    OPEN_INCIDENT_STATES,
    ActionOutcome,
    ContactEvent,
    DeliveryState,
    IllegalTransition,
    IncidentAction,
    IncidentState,
)

I, D, A, O = IncidentState, DeliveryState, IncidentAction, ActionOutcome

# The diagrams in the module docstring and docs/incidents.md, written out once more by hand:
# a change to the tables must change this list too.
LEGAL_INCIDENT_MOVES = {
    (I.PENDING, I.CANCELLED), (I.PENDING, I.DISPATCHING),
    (I.DISPATCHING, I.DISPATCHED), (I.DISPATCHING, I.FAILED),
}
LEGAL_DELIVERY_MOVES = {
    (D.STANDBY, D.PENDING), (D.STANDBY, D.SKIPPED),
    (D.PENDING, D.SENDING), (D.PENDING, D.SENT), (D.PENDING, D.SKIPPED),
    (D.SENDING, D.SENDING), (D.SENDING, D.PENDING), (D.SENDING, D.SENT), (D.SENDING, D.FAILED),
}
INCIDENT_PAIRS = list(itertools.product(IncidentState, repeat=2))
DELIVERY_PAIRS = list(itertools.product(DeliveryState, repeat=2))


def test_the_values_are_the_wire_and_database_strings() -> None:
    assert [s.value for s in IncidentState] == ["pending", "cancelled", "dispatching", "dispatched", "failed"]
    assert [s.value for s in DeliveryState] == ["standby", "pending", "sending", "sent", "failed", "skipped"]
    assert [a.value for a in IncidentAction] == ["cancel", "confirm"]
    assert IncidentState("dispatched") is I.DISPATCHED and f"{I.FAILED}" == "failed"


def test_every_state_has_a_row_in_its_table() -> None:
    assert set(INCIDENT_MOVES) == set(IncidentState)
    assert set(DELIVERY_MOVES) == set(DeliveryState)


@pytest.mark.parametrize(("source", "target"), INCIDENT_PAIRS, ids=[f"{s}->{t}" for s, t in INCIDENT_PAIRS])
def test_incident_moves(source: IncidentState, target: IncidentState) -> None:
    if (source, target) in LEGAL_INCIDENT_MOVES:
        assert source.check_move(target) is target
    else:
        with pytest.raises(IllegalTransition, match=f"IncidentState: '{source}' cannot become '{target}'") as raised:
            source.check_move(target)
        assert (raised.value.source, raised.value.target) == (source, target)


@pytest.mark.parametrize(("source", "target"), DELIVERY_PAIRS, ids=[f"{s}->{t}" for s, t in DELIVERY_PAIRS])
def test_delivery_moves(source: DeliveryState, target: DeliveryState) -> None:
    if (source, target) in LEGAL_DELIVERY_MOVES:
        assert source.check_move(target) is target
    else:
        with pytest.raises(IllegalTransition, match=f"DeliveryState: '{source}' cannot become '{target}'"):
            source.check_move(target)


def test_an_illegal_move_says_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition, match=r"\(it can become cancelled, dispatching\)"):
        I.PENDING.check_move(I.DISPATCHED)
    with pytest.raises(IllegalTransition, match="nothing: it is final"):
        I.CANCELLED.check_move(I.PENDING)
    assert issubclass(IllegalTransition, ValueError)


def test_final_and_open_states() -> None:
    assert {s for s in IncidentState if s.is_final} == {I.CANCELLED, I.DISPATCHED, I.FAILED}
    assert OPEN_INCIDENT_STATES == (I.PENDING, I.DISPATCHING)
    assert {s for s in DeliveryState if s.is_final} == {D.SENT, D.FAILED, D.SKIPPED}
    assert OPEN_DELIVERY_STATES == (D.STANDBY, D.PENDING, D.SENDING)


def test_leads_to_follows_the_table() -> None:
    assert all(s.leads_to(s) for s in IncidentState)
    assert I.PENDING.leads_to(I.DISPATCHED) and I.PENDING.leads_to(I.CANCELLED)
    assert I.DISPATCHING.leads_to(I.FAILED)
    assert not I.DISPATCHING.leads_to(I.PENDING) and not I.DISPATCHING.leads_to(I.CANCELLED)
    assert not I.CANCELLED.leads_to(I.DISPATCHED)


@pytest.mark.parametrize(
    ("action", "won", "found", "outcome", "fulfilled"),
    [
        (A.CANCEL, True, I.CANCELLED, O.CANCELLED, True),
        (A.CANCEL, False, I.CANCELLED, O.ALREADY_CANCELLED, True),
        (A.CANCEL, False, I.DISPATCHING, O.ALREADY_REPORTED, False),
        (A.CANCEL, False, I.DISPATCHED, O.ALREADY_REPORTED, False),
        (A.CANCEL, False, I.FAILED, O.REPORT_FAILED, False),
        (A.CONFIRM, True, I.PENDING, O.CONFIRMED, True),
        (A.CONFIRM, False, I.CANCELLED, O.CANCELLED, False),
        (A.CONFIRM, False, I.DISPATCHING, O.ALREADY_REPORTED, True),
        (A.CONFIRM, False, I.DISPATCHED, O.ALREADY_REPORTED, True),
        (A.CONFIRM, False, I.FAILED, O.REPORT_FAILED, False),
    ],
)
def test_action_outcomes(
    action: IncidentAction, won: bool, found: IncidentState, outcome: ActionOutcome, fulfilled: bool
) -> None:
    assert action.outcome(won=won, found=found) is outcome
    assert action.fulfilled(outcome) is fulfilled


def test_every_outcome_has_a_message() -> None:
    assert all(outcome.message for outcome in ActionOutcome)


def test_contact_events_are_the_database_strings_and_a_settled_report_names_its_notice() -> None:
    assert [e.value for e in ContactEvent] == ["detected", "dispatched", "cancelled", "failed"]
    assert ContactEvent.settled_as(I.DISPATCHED) is ContactEvent.DISPATCHED
    assert ContactEvent.settled_as(I.FAILED) is ContactEvent.FAILED
    for state in (I.PENDING, I.DISPATCHING, I.CANCELLED):
        with pytest.raises(ValueError, match="has not settled"):
            ContactEvent.settled_as(state)
