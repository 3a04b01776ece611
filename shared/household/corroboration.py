"""Household fusion: do the other devices of the home support a detection? Pure rules on what
the activity board holds; docs/evidence.md says the same in plain words.

A detection of class ``C`` on one device at wall-clock time ``t`` is judged against every
other device of its household that posted windows within ``t ± span_s`` (3 s): those are the
**peers listening**. A peer **supports** the detection when, within that span,

* ``same_class``: its smoothed score of ``C`` reached ``score_share`` (half) of ``C``'s
  threshold, or its alarm-pattern detector matched ``C``'s rhythm; or else
* ``loud``: its loudest window was at least ``loud_above_db`` (10 dB) above its usual level,
  the median of its windows over the ``baseline_s`` (30 s) before the span, never counted
  below ``quiet_floor_dbfs`` (-50 dBFS, so a tiny sound in a silent room is not "loud").

A supporting peer whose score reached ``C``'s whole threshold **detected** it too: that is
what may shorten the countdown (:mod:`shared.household.record`). With peers listening and
none supporting, **only this device heard it**; with no peer listening nothing is claimed.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.household.board import BOARD_TTL_S, WindowSummary

# A usual level needs this many windows (2 s of audio) before the span; fewer: the floor.
MIN_USUAL_WINDOWS = 4

How = Literal["same_class", "loud"]


class CorroborationPolicy(BaseModel):
    """How a household's devices corroborate each other (``HEARO_GATEWAY_HOUSEHOLD``, JSON;
    the module docstring says what each number does). ``settle_s``: how long after the
    detection the judgement waits, so that the peers' windows of the whole span have been
    classified and posted. ``score_floor``: scores below it are not posted to the board."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    span_s: float = Field(default=3.0, gt=0.0, le=10.0)
    settle_s: float = Field(default=4.0, ge=0.0, le=20.0)
    score_share: float = Field(default=0.5, gt=0.0, le=1.0)
    loud_above_db: float = Field(default=10.0, gt=0.0)
    quiet_floor_dbfs: float = Field(default=-50.0, le=0.0)
    baseline_s: float = Field(default=30.0, gt=0.0)
    score_floor: float = Field(default=0.05, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _fits_the_board(self) -> CorroborationPolicy:
        if self.settle_s < self.span_s:
            raise ValueError("settle_s must be at least span_s: the peers' windows after the detection must be in")
        if self.span_s + self.baseline_s + self.settle_s > BOARD_TTL_S:
            raise ValueError(f"span_s + baseline_s + settle_s must fit the board's {BOARD_TTL_S:g} s memory")
        return self


@dataclass(frozen=True)
class Peer:
    """Another device of the household: where it listens (``room``), and its owner's name
    when that owner shares their profile (``name``), for saying where a sound was heard."""

    device_id: uuid.UUID
    room: str | None
    name: str | None = None


@dataclass(frozen=True)
class Support:
    """How one peer supported a detection (module docstring); ``loud_db``: its loudest window
    above its usual level; ``incident_id``: its own incident of the class at the same moment."""

    device_id: str
    room: str | None
    name: str | None
    class_key: str
    score: float
    loud_db: float | None
    how: How
    detected: bool
    incident_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id, "room": self.room, "name": self.name, "class": self.class_key,
            "score": round(self.score, 3), "loud_db": None if self.loud_db is None else round(self.loud_db, 1),
            "how": self.how, "detected": self.detected, "incident_id": self.incident_id,
        }  # fmt: skip


@dataclass(frozen=True)
class Corroboration:
    """The judgement of one detection (``incidents.corroboration``, module docstring)."""

    class_key: str
    listening: frozenset[str]  # the peers (device ids) whose windows of the moment were there
    supporting: tuple[Support, ...]
    judged_at: datetime
    linked_incidents: tuple[str, ...] = ()

    @property
    def peers_listening(self) -> int:
        return len(self.listening)

    @property
    def only_this_device(self) -> bool:
        """Peers were listening and none supported it (no peer listening claims nothing)."""
        return self.peers_listening > 0 and not self.supporting

    @property
    def detected_by_peer(self) -> bool:
        """Another device detected the same class at the same moment (its score at its
        threshold, or an incident of its own): what may shorten the countdown."""
        return any(s.detected for s in self.supporting)

    def linked(self, incidents: Mapping[str, str], peers: Mapping[str, Peer]) -> Corroboration:
        """With the peers' own incidents of the class (device id -> incident id; ``peers`` by
        device id): a peer with one supports the detection as ``same_class`` and detected it,
        and counts as listening even when the board lost its windows."""
        supporting = {s.device_id: s for s in self.supporting}
        for device_id, incident_id in incidents.items():
            known = supporting.get(device_id)
            if known is None:
                peer = peers.get(device_id)
                room, name = (peer.room, peer.name) if peer is not None else (None, None)
                known = Support(device_id, room, name, self.class_key, 0.0, None, "same_class", True)
            supporting[device_id] = replace(known, how="same_class", detected=True, incident_id=incident_id)
        return replace(
            self,
            listening=self.listening | set(incidents),
            supporting=tuple(sorted(supporting.values(), key=_strongest_first)),
            linked_incidents=tuple(sorted(incidents.values())),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.class_key,
            "peers_listening": self.peers_listening,
            "listening": sorted(self.listening),
            "supporting": [s.to_json() for s in self.supporting],
            "only_this_device": self.only_this_device,
            "detected_by_peer": self.detected_by_peer,
            "linked_incidents": list(self.linked_incidents),
            "judged_at": self.judged_at.isoformat(),
        }


def judge_corroboration(
    class_key: str,
    threshold: float,
    detected_at: float,
    peers: Iterable[Peer],
    heard: Sequence[WindowSummary],
    policy: CorroborationPolicy,
    judged_at: datetime,
) -> Corroboration:
    """Judge a detection of ``class_key`` (its onset ``threshold``) heard at ``detected_at``
    (epoch seconds, the board's clock) against the ``peers``' summaries in ``heard``."""
    listening, supporting = set(), []
    for peer in peers:
        own = [s for s in heard if s.device_id == str(peer.device_id)]
        near = [s for s in own if abs(s.heard_at - detected_at) <= policy.span_s]
        if not near:
            continue
        listening.add(str(peer.device_id))
        support = _support(peer, class_key, threshold, detected_at, own, near, policy)
        if support is not None:
            supporting.append(support)
    return Corroboration(class_key, frozenset(listening), tuple(sorted(supporting, key=_strongest_first)), judged_at)


def _support(
    peer: Peer, class_key: str, threshold: float, detected_at: float,
    own: Sequence[WindowSummary], near: Sequence[WindowSummary], policy: CorroborationPolicy,
) -> Support | None:  # fmt: skip
    score = max(s.scores.get(class_key, 0.0) for s in near)
    rhythm = any(class_key in s.patterns for s in near)
    span_start = detected_at - policy.span_s
    before = [s.level_dbfs for s in own if span_start - policy.baseline_s <= s.heard_at < span_start]
    usual = statistics.median(before) if len(before) >= MIN_USUAL_WINDOWS else policy.quiet_floor_dbfs
    loud_db = max(s.level_dbfs for s in near) - max(usual, policy.quiet_floor_dbfs)
    if score >= policy.score_share * threshold or rhythm:
        how: How = "same_class"
    elif loud_db >= policy.loud_above_db:
        how = "loud"
    else:
        return None
    return Support(str(peer.device_id), peer.room, peer.name, class_key, score, loud_db, how, score >= threshold)


def _strongest_first(support: Support) -> tuple[int, float]:
    return (0 if support.how == "same_class" else 1, -support.score)


def where_heard(own_room: str | None, own_name: str | None, corroboration: Mapping[str, Any] | None) -> str | None:
    """The plain sentence for a dispatcher: "heard in the kitchen and the bedroom" (the
    detecting device first), "heard only in the kitchen: ...", or None when not judged.
    A device without a room is named by its owner's name when shared, else "another device"."""
    if not corroboration:
        return None
    own = place_phrase(own_room, own_name, "this device")
    supporting = [s for s in corroboration.get("supporting") or [] if isinstance(s, dict)]
    same = [place_phrase(s.get("room"), s.get("name")) for s in supporting if s.get("how") == "same_class"]
    loud = [place_phrase(s.get("room"), s.get("name")) for s in supporting if s.get("how") == "loud"]
    listening = int(corroboration.get("peers_listening") or 0)
    if corroboration.get("only_this_device"):
        others = "the other device listening" if listening == 1 else f"the {listening} other devices listening"
        return f"heard only {own}: {others} heard nothing like it"
    text = f"heard {_joined([own, *same])}"
    if loud:
        text += f"; a loud sound at the same moment {_joined(loud)}"
    if listening == 0:
        text += "; no other device of the home was listening"
    return text


def place_phrase(room: object, name: object, otherwise: str = "another device") -> str:
    """Where a device listens, for a sentence: "in the kitchen", "on Kim Soon-ja's device",
    "on another device"."""
    if isinstance(room, str) and room.strip():
        room = room.strip()
        lower = room.lower()
        # "kitchen" reads "in the kitchen"; "Grandma's room", "the attic" or "거실" as given.
        needs_article = room[0].isascii() and room[0].islower() and not lower.startswith(("the ", "a ", "an ", "my "))
        return f"in the {room}" if needs_article else f"in {room}"
    if isinstance(name, str) and name.strip():
        return f"on {name.strip()}'s device"
    return f"on {otherwise}"


def _joined(places: list[str]) -> str:
    """"in the kitchen", "in the bedroom" -> "in the kitchen and the bedroom"."""
    words: list[str] = []
    for i, place in enumerate(places):
        preposition, _, rest = place.partition(" ")
        same = i > 0 and places[i - 1].partition(" ")[0] == preposition
        words.append(rest if same else place)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
