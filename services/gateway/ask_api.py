"""Questions over the device's history: ``app.include_router(ask_api.router)`` (docs/ask.md).

=======  =================================  ================================================
GET      /v1/ask?q=...&tz=Asia/Seoul        ``{question, language, understood, range,
                                            classes, states, answer, examples, events}``
=======  =================================  ================================================

The question ("어젯밤에 무슨 일 있었어?", "any alarms this week?") is read by the rules of
:mod:`shared.history_query`, with nothing remote, in the time zone ``tz`` (an IANA name;
devices keep none, so the client sends its own, Asia/Seoul by default). The answer covers the
caller's device only. A question whose time cannot be told is still a 200: ``understood``
false, ``answer`` says so in the question's language and ``examples`` are questions that are
understood (it is an answer for a person to read, not a malformed request).

The app must set ``app.state.db`` (:class:`~shared.db.Database`) before serving.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from services.gateway.auth import CurrentDevice, DatabaseDep
from services.gateway.incidents_api import ClassKey
from services.gateway.openapi import UNAUTHORIZED, ApiRoute
from services.gateway.schemas import NO_NUL
from shared.history_query import DEFAULT_TIME_ZONE, HistoryAnswer, HistoryEvent, ask_history, event_summary, time_zone
from shared.incident_state import IncidentState

router = APIRouter(tags=["history"], route_class=ApiRoute)


def _known_zone(name: str) -> str:
    time_zone(name)  # ValueError names the zone: a 422
    return name


ZoneName = Annotated[str, AfterValidator(_known_zone)]


class TimeRange(BaseModel):
    """``[start, end)`` in the question's time zone."""

    start: AwareDatetime
    end: AwareDatetime


class AskEvent(BaseModel):
    """One event of the answer. Every kept event is an incident today (docs/ask.md)."""

    kind: Literal["incident"]
    incident_id: str
    class_: ClassKey = Field(alias="class")
    state: IncidentState
    detected_at: AwareDatetime
    confidence: float
    summary: str = Field(description="The event in the question's language, e.g. '화재 경보 (취소됨)'.")


class AskAnswer(BaseModel):
    """The answer to ``q``. ``range``, ``classes`` and ``states`` are what the question was read
    as (empty ``classes``/``states``: any); ``range`` is null when ``understood`` is false."""

    question: str
    language: Literal["ko", "en"]
    understood: bool
    range: TimeRange | None
    classes: list[ClassKey]
    states: list[IncidentState]
    answer: str
    examples: list[str] = Field(description="Questions that are understood; given when this one was not.")
    events: list[AskEvent]


def _event(event: HistoryEvent, answer: HistoryAnswer) -> AskEvent:
    return AskEvent.model_validate(
        {
            "kind": event.kind,
            "incident_id": str(event.id),
            "class": event.class_key,
            "state": event.state,
            "detected_at": event.at,
            "confidence": event.confidence,
            "summary": event_summary(event, answer.language),
        }
    )


@router.get("/v1/ask", responses=UNAUTHORIZED, response_model=AskAnswer)
async def ask(
    device: CurrentDevice,
    db: DatabaseDep,
    q: Annotated[str, Query(min_length=1, max_length=500, pattern=NO_NUL, description="The question, in Korean or English.")],
    tz: Annotated[
        ZoneName,
        Query(max_length=64, description="IANA time zone the question's times are in."),
    ] = DEFAULT_TIME_ZONE,
) -> AskAnswer:
    """Answer a question about what the caller's device heard ("어젯밤에 무슨 일 있었어?")."""
    zone = time_zone(tz)
    answer = await ask_history(db, device.id, q, now=datetime.now(UTC), tz=zone)
    query = answer.query
    return AskAnswer(
        question=answer.question,
        language=answer.language,
        understood=answer.understood,
        range=None if query is None else TimeRange(start=query.start, end=query.end),
        classes=list(query.classes) if query else [],
        states=list(query.states) if query else [],
        answer=answer.text,
        examples=list(answer.examples),
        events=[_event(event, answer) for event in answer.events],
    )
