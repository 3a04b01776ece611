"""The states an incident and its deliveries can be in, the only moves between them, and what
a person can ask of an incident.

An incident (``incidents.state``)::

    pending ──cancel──▶ cancelled
       │ deadline (or confirm: deadline := now)
       ▼
    dispatching ──every agency reached──▶ dispatched
                └─an agency unreachable on every channel──▶ failed

A delivery, an agency report or a guardian notice (``dispatch_outbox.state``,
``contact_notifications.state``)::

    standby ──previous channel failed──▶ pending ──claim──▶ sending ──2xx──▶ sent
                                            ▲                  │
                                            └───── retry ──────┤
                                                               └─permanent or exhausted─▶ failed
    standby ──an earlier channel delivered──▶ skipped
    standby, pending (never tried) ──the incident was cancelled first──▶ skipped

and two moves the diagram hides: ``sending ──▶ sending`` (a dead lease taken over) and
``pending ──▶ sent`` (a success recorded after another sender had set the row to retry:
success is written whatever the lease, because it is true).

What a guardian is told (``contact_notifications.event``) is a :class:`ContactEvent`: the
detection, its cancel, and the two final states of the report.

The values are the strings on the wire and in the database. Code that moves a state asks
the table first (:meth:`IncidentState.check_move`), so a move the diagrams lack raises
:class:`IllegalTransition` before any SQL runs; the database's CHECK constraints refuse a
name that is not a state. This module imports nothing of the project, so the database
models, the wire messages, the incident events, alerting and the CLI all take it from here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class IllegalTransition(ValueError):
    """A state change that the transition table does not allow (a bug, never user input)."""

    def __init__(self, source: IncidentState | DeliveryState, target: IncidentState | DeliveryState) -> None:
        allowed = ", ".join(sorted(s.value for s in source.successors)) or "nothing: it is final"
        super().__init__(
            f"{type(source).__name__}: {source.value!r} cannot become {target.value!r} (it can become {allowed})"
        )
        self.source = source
        self.target = target


class IncidentState(enum.StrEnum):
    PENDING = "pending"
    CANCELLED = "cancelled"
    DISPATCHING = "dispatching"
    DISPATCHED = "dispatched"
    FAILED = "failed"

    @property
    def successors(self) -> frozenset[IncidentState]:
        return INCIDENT_MOVES[self]

    @property
    def is_final(self) -> bool:
        return not self.successors

    @property
    def is_open(self) -> bool:
        """Not yet settled: a new detection adds evidence to it instead of opening another."""
        return self in (IncidentState.PENDING, IncidentState.DISPATCHING)

    def check_move(self, target: IncidentState) -> IncidentState:
        """``target``, when this state may become it; else raises :class:`IllegalTransition`."""
        if target not in self.successors:
            raise IllegalTransition(self, target)
        return target

    def leads_to(self, later: IncidentState) -> bool:
        """``later`` is this state or one it can reach: news about it is not stale."""
        return later is self or any(step.leads_to(later) for step in self.successors)


class DeliveryState(enum.StrEnum):
    STANDBY = "standby"  # a fallback channel, waiting for the one before it to fail
    PENDING = "pending"  # due at ``next_attempt_at``
    SENDING = "sending"  # claimed under a lease
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def successors(self) -> frozenset[DeliveryState]:
        return DELIVERY_MOVES[self]

    @property
    def is_final(self) -> bool:
        return not self.successors

    def check_move(self, target: DeliveryState) -> DeliveryState:
        """``target``, when this state may become it; else raises :class:`IllegalTransition`."""
        if target not in self.successors:
            raise IllegalTransition(self, target)
        return target


# The transition tables: the diagrams above, and nothing else.
INCIDENT_MOVES: Mapping[IncidentState, frozenset[IncidentState]] = {
    IncidentState.PENDING: frozenset({IncidentState.CANCELLED, IncidentState.DISPATCHING}),
    IncidentState.DISPATCHING: frozenset({IncidentState.DISPATCHED, IncidentState.FAILED}),
    IncidentState.CANCELLED: frozenset(),
    IncidentState.DISPATCHED: frozenset(),
    IncidentState.FAILED: frozenset(),
}
DELIVERY_MOVES: Mapping[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.STANDBY: frozenset({DeliveryState.PENDING, DeliveryState.SKIPPED}),
    DeliveryState.PENDING: frozenset({DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.SKIPPED}),
    DeliveryState.SENDING: frozenset(
        {DeliveryState.SENDING, DeliveryState.PENDING, DeliveryState.SENT, DeliveryState.FAILED}
    ),
    DeliveryState.SENT: frozenset(),
    DeliveryState.FAILED: frozenset(),
    DeliveryState.SKIPPED: frozenset(),
}
OPEN_INCIDENT_STATES = tuple(state for state in IncidentState if state.is_open)
# A delivery in one of these may still be sent; an incident settles once none of its are.
OPEN_DELIVERY_STATES = tuple(state for state in DeliveryState if not state.is_final)


class ContactEvent(enum.StrEnum):
    """What a guardian is told about an incident (``contact_notifications.event``, and the
    ``incident.<event>`` notice they get)."""

    DETECTED = "detected"  # the countdown started
    DISPATCHED = "dispatched"  # the report reached every agency
    CANCELLED = "cancelled"  # the owner called it a false alarm (sent only to those told of the detection)
    FAILED = "failed"  # an agency could not be reached on any channel

    @classmethod
    def settled_as(cls, state: IncidentState) -> ContactEvent:
        """The notice of a report that settled in ``state`` (``dispatched`` or ``failed``)."""
        if state is IncidentState.DISPATCHED:
            return cls.DISPATCHED
        if state is IncidentState.FAILED:
            return cls.FAILED
        raise ValueError(f"an incident {state.value!r} has not settled its report")


class IncidentOutcome(enum.StrEnum):
    """What an agency found when it answered a report (``incident_outcomes.outcome``): the
    outcome ledger behind the published precision (docs/incidents.md#the-outcome-ledger)."""

    CONFIRMED_EMERGENCY = "confirmed_emergency"
    NO_EMERGENCY_FOUND = "no_emergency_found"
    UNABLE_TO_REACH = "unable_to_reach"  # nobody answered on site: neither true nor false


class EvidenceMark(enum.StrEnum):
    """How the evidence of a pending incident has gone since its detection
    (``incidents.evidence``; the rule: ``shared.incidents.evidence``, docs/evidence.md)."""

    GROWING = "growing"  # heard again, or another emergency heard: the case is stronger
    STEADY = "steady"  # neither: the sound may go on, nothing new
    FADED = "faded"  # back to normal sound for most of the time since; shown, never a cancel


class CancelKind(enum.StrEnum):
    """Why a person cancelled (``incidents.cancel_kind``): false alarms of one class with
    similar sound teach that home's threshold (``shared.incidents.threshold_learning``)."""

    FALSE_ALARM = "false_alarm"  # nothing was wrong: the detector was mistaken
    HANDLED = "handled"  # something happened, and the person dealt with it
    NOT_SURE = "not_sure"


class IncidentKind(enum.StrEnum):
    """What opened an incident (``incidents.kind``); each kind has its own routing."""

    EMERGENCY = "emergency"  # one of the nine classes: reported to its agency after the countdown
    ANOMALY = "anomaly"  # away/alone mode: guardians and contacts first, never an agency on its own
    CHILD_SAFETY = "child_safety"  # daycare profile: the staff first, a short countdown, then 112


class IncidentAction(enum.StrEnum):
    """What a person can ask of a pending incident; the values are the client messages' types."""

    CANCEL = "cancel"  # a false alarm: never report it
    CONFIRM = "confirm"  # report now: the deadline becomes now

    def outcome(self, *, won: bool, found: IncidentState) -> ActionOutcome:
        """The answer to this action: ``won`` when it changed the pending incident, otherwise
        by the state it ``found`` (the deadline, or another action, came first)."""
        if won:
            return ActionOutcome.CANCELLED if self is IncidentAction.CANCEL else ActionOutcome.CONFIRMED
        if found is IncidentState.CANCELLED:
            return ActionOutcome.ALREADY_CANCELLED if self is IncidentAction.CANCEL else ActionOutcome.CANCELLED
        if found is IncidentState.FAILED:
            return ActionOutcome.REPORT_FAILED
        return ActionOutcome.ALREADY_REPORTED

    def fulfilled(self, outcome: ActionOutcome) -> bool:
        """Whether the incident now stands as the person asked (a repeat is fulfilled too):
        the REST API answers 200 when so and 409 when not."""
        wanted = (
            (ActionOutcome.CANCELLED, ActionOutcome.ALREADY_CANCELLED)
            if self is IncidentAction.CANCEL
            else (ActionOutcome.CONFIRMED, ActionOutcome.ALREADY_REPORTED)
        )
        return outcome in wanted


class ActionOutcome(enum.StrEnum):
    """The answer to an :class:`IncidentAction` (``detail.outcome`` on the wire, the REST ``outcome``)."""

    CANCELLED = "cancelled"  # a cancel won; or a confirm found the incident cancelled
    CONFIRMED = "confirmed"  # the deadline moved to now; the worker reports within a sweep
    ALREADY_CANCELLED = "already_cancelled"
    ALREADY_REPORTED = "already_reported"  # dispatching or dispatched: the report went
    REPORT_FAILED = "report_failed"  # the report was attempted and could not be delivered
    NOT_FOUND = "not_found"  # no such incident (or another device's)

    @property
    def message(self) -> str:
        """The outcome in a sentence for the person who asked."""
        return _OUTCOME_MESSAGES[self]


_OUTCOME_MESSAGES: Mapping[ActionOutcome, str] = {
    ActionOutcome.CANCELLED: "cancelled: nothing will be reported",
    ActionOutcome.CONFIRMED: "reporting now",
    ActionOutcome.ALREADY_CANCELLED: "already cancelled: nothing will be reported",
    ActionOutcome.ALREADY_REPORTED: "already reported: the report has gone out",
    ActionOutcome.REPORT_FAILED: "the report was attempted and could not be delivered; call 112/119 directly",
    ActionOutcome.NOT_FOUND: "no such incident",
}
