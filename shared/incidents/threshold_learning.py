"""Cancels that teach: when a home keeps cancelling the same sound as a false alarm, that
home's threshold for the class rises a step, within bounds that keep it from going deaf.
Pure rules on typed facts; docs/evidence.md says the same in plain words for families and
dispatchers, and :mod:`shared.incidents.threshold_adjustments` keeps the changes.

The rule, run after each cancel of kind ``false_alarm`` (never on the audio path):

* **similar false alarms**: the device's false-alarm cancels of the class detected in the
  last ``window_days`` (30), and after its latest change of that class's threshold (a step or
  an undo: every step needs fresh evidence, and an undo is not re-learned at the next cancel),
  whose sound signature (:mod:`shared.incidents.sound_signature`) is at least ``similarity``
  (0.9) alike with the one just cancelled, that one included;
* **a step**: with at least ``min_cancels`` of them (3; fire and gas 5), the threshold moves
  ``step_share`` (a tenth) of the way from where it is towards 1;
* **the bound**: never above ``base + max_share × (1 − base)`` (three tenths of the way from
  the base to 1; fire and gas two tenths): the base is the threshold the gateway would use
  without learning (its setting, else the served model's). At the bound, nothing changes.

The bounds are shares of the headroom above the base, not fixed amounts, because models put
their thresholds anywhere between 0.3 and 0.99. Only the scores of the model are judged against
a learned threshold: an alarm's rhythm (temporal-three, temporal-four, full or partial) and
spoken distress words are judged as before (``shared.detector``), so no learning suppresses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.incidents.sound_signature import similarity
from shared.taxonomy import by_key

# Thresholds are stored and shown to this many decimal places.
_PLACES = 4


class LearningBounds(BaseModel):
    """How one class learns: ``min_cancels`` similar false alarms make a step of ``step_share``
    of the headroom to 1; the threshold stays within ``max_share`` of the base's headroom."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_cancels: int = Field(default=3, ge=2)
    step_share: float = Field(default=0.1, gt=0.0, le=0.5)
    max_share: float = Field(default=0.3, gt=0.0, le=0.5)

    def ceiling(self, base: float) -> float:
        """The highest threshold learning may reach from ``base``: the home's floor of sensitivity."""
        return round(base + self.max_share * (1.0 - base), _PLACES)

    def next_step(self, current: float, base: float) -> float:
        """Where one step takes the threshold from ``current`` (never past the ceiling)."""
        return round(min(current + self.step_share * (1.0 - current), self.ceiling(base)), _PLACES)

    def bounded(self, learned: float, base: float) -> float:
        """A stored threshold as it applies under ``base`` now (the base or the model may have
        changed since it was learned): never below the base, never above the ceiling."""
        return max(base, min(learned, self.ceiling(base)))


# Fire and gas: a missed alarm costs the most, so a step needs more evidence and the bound is
# lower. Their alarm patterns stay a detection whatever is learned.
DEFAULT_CLASS_BOUNDS: dict[str, LearningBounds] = {
    "fire": LearningBounds(min_cancels=5, max_share=0.2),
    "gas": LearningBounds(min_cancels=5, max_share=0.2),
}


class LearningPolicy(BaseModel):
    """The gateway's threshold learning (``HEARO_GATEWAY_THRESHOLD_LEARNING``, JSON);
    ``{"enabled": false}`` turns it off (thresholds already learned still apply until undone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    window_days: float = Field(default=30.0, gt=0.0)
    similarity: float = Field(default=0.9, gt=0.0, le=1.0)
    default: LearningBounds = Field(default_factory=LearningBounds)
    classes: dict[str, LearningBounds] = Field(default_factory=lambda: dict(DEFAULT_CLASS_BOUNDS))

    @field_validator("classes")
    @classmethod
    def _emergency_classes(cls, bounds: dict[str, LearningBounds]) -> dict[str, LearningBounds]:
        for key in bounds:
            try:
                emergency = by_key(key).is_emergency
            except KeyError:
                raise ValueError(f"no class {key!r}") from None
            if not emergency:
                raise ValueError(f"class {key!r} never fires; it has no threshold to learn")
        return bounds

    def bounds(self, class_key: str) -> LearningBounds:
        return self.classes.get(class_key, self.default)


class FalseAlarmLearner(Protocol):
    """What learns from a cancel (``act_on_incident``'s ``learning``; the gateway's
    ``services.gateway.device_thresholds.DeviceThresholds``): called once a cancel of kind
    ``false_alarm`` committed, with the incident; never raises."""

    async def false_alarm(self, incident_id: uuid.UUID) -> None: ...


@dataclass(frozen=True)
class FalseAlarm:
    """A cancelled false alarm as the rule sees it."""

    incident_id: uuid.UUID
    detected_at: datetime
    signature: list[float] | None


@dataclass(frozen=True)
class Lesson:
    """What a home's false alarms of one class teach: the similar ones (incident, similarity),
    newest first, and where the threshold goes (``threshold_to`` equals ``threshold_from`` at
    the ceiling). None from :func:`lesson` when they are too few."""

    similar: tuple[tuple[uuid.UUID, float], ...]
    threshold_from: float
    threshold_to: float
    ceiling: float

    @property
    def raises(self) -> bool:
        return self.threshold_to > self.threshold_from

    def evidence(
        self, class_key: str, base: float, bounds: LearningBounds, policy: LearningPolicy
    ) -> dict[str, object]:
        """What the change rests on, as stored with it (``threshold_adjustments.evidence``)."""
        return {
            "class": class_key,
            "incidents": [str(incident_id) for incident_id, _ in self.similar],
            "similarities": [round(value, 3) for _, value in self.similar],
            "base": base,
            "ceiling": self.ceiling,
            "rule": {
                "min_cancels": bounds.min_cancels, "step_share": bounds.step_share, "max_share": bounds.max_share,
                "similarity": policy.similarity, "window_days": policy.window_days,
            },
        }  # fmt: skip


def lesson(
    latest: FalseAlarm,
    earlier: Sequence[FalseAlarm],
    *,
    current: float,
    base: float,
    bounds: LearningBounds,
    min_similarity: float,
) -> Lesson | None:
    """What ``latest`` (just cancelled) and the ``earlier`` false alarms of its class that
    count (in the window, since the last change) teach, from the ``current`` threshold; None
    when fewer than ``bounds.min_cancels`` are alike (``latest`` without a signature: none)."""
    if latest.signature is None:
        return None
    alike = [(latest.incident_id, 1.0)]
    for alarm in sorted(earlier, key=lambda a: a.detected_at, reverse=True):
        if alarm.incident_id == latest.incident_id:
            continue
        value = similarity(latest.signature, alarm.signature)
        if value >= min_similarity:
            alike.append((alarm.incident_id, value))
    if len(alike) < bounds.min_cancels:
        return None
    start = bounds.bounded(current, base)
    return Lesson(tuple(alike), start, max(start, bounds.next_step(start, base)), bounds.ceiling(base))
