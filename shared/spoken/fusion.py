"""How spoken phrases become detections, fused with the acoustic model's scores.

A confirmed phrase (``SpokenHit``) is strong evidence for its class, but a phrase on its own,
as an actor says it in a TV drama, does not fire. Within ``window_s`` of each other, a class's
hits fire it when one of these supports them:

- repetition: ``repeat_count`` hits (of any of the class's phrases, in separate utterances);
- shouting: a hit whose utterance was raised (``SpokenHit.shouted``);
- the model: the class's smoothed score is at least ``support_ratio`` x its threshold while
  the hit is recent (for ``help``, whose threshold is 0.93, a score of 0.47).

``SpokenFusion`` is the object the ``Detector`` consults (``Detector.hear_spoken``): hits are
queued, taken in stream order up to each window's end, and ``decide`` says which classes the
spoken evidence fires now, with the summary the dispatcher sees: "heard: '살려주세요' ×2".
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from shared.spoken.listener import SpokenHit
from shared.taxonomy import by_key

__all__ = ["SpokenDecision", "SpokenFusion", "SpokenFusionConfig", "summarise"]


@dataclass(frozen=True)
class SpokenFusionConfig:
    window_s: float = 20.0
    repeat_count: int = 2
    support_ratio: float = 0.5
    # Hits closer than this are one utterance heard twice (two languages, overlapping spots).
    same_utterance_s: float = 0.5


@dataclass(frozen=True)
class SpokenDecision:
    class_key: str
    confidence: float  # the best hit's
    stream_time_s: float
    support: str  # "repeated", "shouted" or "model"
    summary: str  # "heard: '살려주세요' ×2"


def summarise(hits: Iterable[SpokenHit]) -> str:
    """"heard: '살려주세요' ×2, 'help'" for the dispatcher, phrases in the order first heard."""
    counts: dict[str, int] = {}
    for hit in hits:
        counts[hit.text] = counts.get(hit.text, 0) + 1
    parts = [f"'{text}' ×{n}" if n > 1 else f"'{text}'" for text, n in counts.items()]
    return "heard: " + ", ".join(parts) if parts else ""


@dataclass
class SpokenFusion:
    config: SpokenFusionConfig = field(default_factory=SpokenFusionConfig)
    _queued: deque[SpokenHit] = field(default_factory=deque)
    _recent: dict[str, list[SpokenHit]] = field(default_factory=dict)

    def hear(self, hits: Iterable[SpokenHit]) -> None:
        """Queue hits, oldest first."""
        self._queued.extend(hits)

    def recent(self, class_key: str, stream_time_s: float) -> list[SpokenHit]:
        """The class's hits within ``window_s`` before ``stream_time_s``: the incident's evidence."""
        return [h for h in self._recent.get(class_key, []) if stream_time_s - h.end_s <= self.config.window_s]

    def decide(
        self, stream_time_s: float, smoothed: np.ndarray | None, thresholds: Mapping[str, float],
    ) -> list[SpokenDecision]:
        """Take the queued hits up to ``stream_time_s`` and return the classes their evidence
        fires now. A class that fires forgets its hits (the detector's refractory period
        keeps it from firing again)."""
        cfg = self.config
        while self._queued and self._queued[0].end_s <= stream_time_s:
            hit = self._queued.popleft()
            self._recent.setdefault(hit.class_key, []).append(hit)
        decisions = []
        for class_key in list(self._recent):
            hits = self.recent(class_key, stream_time_s)
            self._recent[class_key] = hits
            if not hits:
                continue
            support = self._support(class_key, hits, smoothed, thresholds)
            if support is None:
                continue
            best = max(h.confidence for h in hits)
            decisions.append(SpokenDecision(class_key, best, stream_time_s, support, summarise(hits)))
            self._recent[class_key] = []
        return decisions

    def _support(
        self, class_key: str, hits: list[SpokenHit], smoothed: np.ndarray | None, thresholds: Mapping[str, float],
    ) -> str | None:
        cfg = self.config
        utterances = 0
        last = -math.inf
        for hit in sorted(hits, key=lambda h: h.start_s):
            if hit.start_s - last > cfg.same_utterance_s:
                utterances += 1
            last = max(last, hit.end_s)
        if utterances >= cfg.repeat_count:
            return "repeated"
        if any(h.shouted for h in hits):
            return "shouted"
        if smoothed is not None and class_key in thresholds:
            if float(smoothed[by_key(class_key).id]) >= cfg.support_ratio * thresholds[class_key]:
                return "model"
        return None
