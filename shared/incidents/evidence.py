"""The evidence of a countdown: how it is judged (growing, steady, faded), and when growing
evidence brings the report forward. Pure rules on typed facts; docs/evidence.md says the same
in plain words for dispatchers and families.

The gateway gathers the facts while it keeps listening during the countdown
(``services.gateway.session_evidence``); :mod:`shared.incidents.evidence_record` stores the
mark and moves the deadline. The rules, in order:

* **growing**: the incident's class was detected again after the detection that opened it (a
  detector event, a full alarm-pattern match, its smoothed score back at the threshold after
  falling below its release level), another emergency class was detected, or a distress
  phrase was heard;
* **faded**: otherwise, once at least ``min_heard_share`` of the countdown has been heard, if
  the class's smoothed score was below its release level for ``share`` (70 %) of it;
* **steady**: anything else.

Faded never cancels: only the person can. Shortening (per class, :class:`ShorteningRule`)
moves the deadline to ``max(now, detected_at + countdown_share × countdown)`` and only ever
earlier; the same rule applies when another device of the household detected the class at the
same moment (:func:`corroborated_deadline`, :mod:`shared.household`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.incident_state import EvidenceMark
from shared.taxonomy import CLASSES, by_key


@dataclass(frozen=True)
class EvidenceFacts:
    """What was heard since the detection that opened an incident of ``class_key``.

    ``renewals``: per emergency class, how often it was detected again after that detection (for
    another class than ``class_key``: detected at all). ``patterns``: classes whose alarm rhythm
    was matched in full (the opening detection's included). ``spoken``: a distress phrase made a
    detection. ``heard_s``: audio classified since the detection; ``quiet_s``: the part of it in
    which ``class_key``'s smoothed score was below its release level. ``phrases``: the distress
    phrases heard from shortly before the detection on, as the dispatcher reads them ("heard:
    '살려주세요' ×2"; docs/spoken.md), the opening detection's included, so not itself growing.
    """

    class_key: str
    renewals: Mapping[str, int] = field(default_factory=dict)
    patterns: frozenset[str] = frozenset()
    spoken: bool = False
    heard_s: float = 0.0
    quiet_s: float = 0.0
    phrases: str | None = None

    @property
    def quiet_share(self) -> float:
        return self.quiet_s / self.heard_s if self.heard_s > 0 else 0.0

    @property
    def classes_heard(self) -> list[str]:
        """The incident's class, then every other emergency class detected, in taxonomy order."""
        others = {key for key, count in self.renewals.items() if count > 0 and key != self.class_key}
        return [self.class_key] + [c.key for c in CLASSES if c.key in others]

    def to_json(self) -> dict[str, Any]:
        """The summary stored with the incident and sent in the report."""
        return {
            "renewals": {key: count for key, count in sorted(self.renewals.items()) if count > 0},
            "classes_heard": self.classes_heard,
            "alarm_patterns": sorted(self.patterns),
            "spoken": self.spoken,
            "heard_s": round(self.heard_s, 1),
            "quiet_share": round(self.quiet_share, 3),
            "phrases": self.phrases,
        }


class FadedRule(BaseModel):
    """When evidence counts as faded: quiet for ``share`` of the time heard since the detection,
    once at least ``min_heard_share`` of the countdown has been heard (so the first quiet second
    does not say "faded")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    share: float = Field(default=0.7, gt=0.0, le=1.0)
    min_heard_share: float = Field(default=0.25, ge=0.0, le=1.0)


class ShorteningRule(BaseModel):
    """Growing evidence of one class brings its report forward to ``detected_at +
    countdown_share × countdown`` (or now, when that has passed) once the class was detected
    again ``renewals`` times, and, with ``needs_pattern``, its alarm rhythm was matched in full."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    countdown_share: float = Field(gt=0.0, lt=1.0)
    renewals: int = Field(default=1, ge=1)
    needs_pattern: bool = False
    # Another device of the household detecting the class at the same moment counts as the
    # evidence above (docs/evidence.md); false keeps the rule to what this device heard.
    corroborated: bool = True

    def met(self, facts: EvidenceFacts) -> bool:
        renewed = facts.renewals.get(facts.class_key, 0) >= self.renewals
        return renewed and (not self.needs_pattern or facts.class_key in facts.patterns)

    def reason(self, class_key: str) -> str:
        pattern = "its alarm pattern confirmed and " if self.needs_pattern else ""
        times = "once" if self.renewals == 1 else f"{self.renewals} times"
        return (
            f"{class_key}: {pattern}detected again {times}; report at "
            f"{round(100 * self.countdown_share)}% of the countdown"
        )

    def corroboration_reason(self, class_key: str, where: str) -> str:
        return f"{class_key}: detected {where} too; report at {round(100 * self.countdown_share)}% of the countdown"


# Where seconds matter and a repeat is hard to mistake: a smoke alarm whose rhythm is confirmed
# and still heard, a second sound of a break-in or assault (a scream after breaking glass). Gas
# (a CO alarm), a fall or a call for help are left at the full countdown: a person who is fine
# needs the time to cancel, and a repeat of those sounds says less about danger growing.
DEFAULT_SHORTENING: dict[str, ShorteningRule] = {
    "fire": ShorteningRule(countdown_share=0.5, renewals=1, needs_pattern=True),
    "crime": ShorteningRule(countdown_share=0.5, renewals=1),
}


class EvidencePolicy(BaseModel):
    """The gateway's evidence policy (``HEARO_GATEWAY_EVIDENCE``, JSON); ``{"shortening": {}}``
    turns shortening off. ``flush_s``: a session writes what it heard about an incident once
    per this much audio (one transaction per batch, not one per window)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flush_s: float = Field(default=2.0, gt=0.0)
    faded: FadedRule = Field(default_factory=FadedRule)
    shortening: dict[str, ShorteningRule] = Field(default_factory=lambda: dict(DEFAULT_SHORTENING))

    @field_validator("shortening")
    @classmethod
    def _emergency_classes(cls, rules: dict[str, ShorteningRule]) -> dict[str, ShorteningRule]:
        for key in rules:
            try:
                emergency = by_key(key).is_emergency
            except KeyError:
                raise ValueError(f"no class {key!r}") from None
            if not emergency:
                raise ValueError(f"class {key!r} opens no incident; it takes no shortening rule")
        return rules


@dataclass(frozen=True)
class Shortening:
    """The earlier deadline growing evidence earned, and why (for the audit and the report)."""

    deadline_at: datetime
    reason: str


def judge_evidence(facts: EvidenceFacts, countdown_s: float, faded: FadedRule = FadedRule()) -> EvidenceMark:
    """The mark of ``facts`` (module docstring)."""
    if facts.spoken or any(count > 0 for count in facts.renewals.values()):
        return EvidenceMark.GROWING
    if facts.heard_s > 0 and facts.heard_s >= faded.min_heard_share * countdown_s and facts.quiet_share >= faded.share:
        return EvidenceMark.FADED
    return EvidenceMark.STEADY


def shortened_deadline(
    rules: Mapping[str, ShorteningRule],
    facts: EvidenceFacts,
    *,
    detected_at: datetime,
    deadline_at: datetime,
    now: datetime,
    countdown_s: float,
) -> Shortening | None:
    """The earlier deadline ``facts`` earn under ``rules``, or None: no rule for the class, not
    met, or not earlier than ``deadline_at`` (a deadline is never moved later)."""
    rule = rules.get(facts.class_key)
    if rule is None or not rule.met(facts):
        return None
    return _earlier(rule, rule.reason(facts.class_key), detected_at, deadline_at, now, countdown_s)


def corroborated_deadline(
    rules: Mapping[str, ShorteningRule],
    class_key: str,
    where: str,
    *,
    detected_at: datetime,
    deadline_at: datetime,
    now: datetime,
    countdown_s: float,
) -> Shortening | None:
    """The earlier deadline earned when another device of the household (``where``: "in the
    bedroom") detected ``class_key`` at the same moment, under the class's rule in ``rules``
    when it takes corroboration; None otherwise or when not earlier than ``deadline_at``."""
    rule = rules.get(class_key)
    if rule is None or not rule.corroborated:
        return None
    return _earlier(rule, rule.corroboration_reason(class_key, where), detected_at, deadline_at, now, countdown_s)


def _earlier(
    rule: ShorteningRule, reason: str, detected_at: datetime, deadline_at: datetime, now: datetime, countdown_s: float
) -> Shortening | None:
    target = max(now, detected_at + timedelta(seconds=rule.countdown_share * countdown_s))
    if target >= deadline_at:
        return None
    return Shortening(target, reason)
