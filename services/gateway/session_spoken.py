"""A session's spoken evidence: its 16 kHz audio to the keyword recognisers, off the event loop.

The gateway keeps one :class:`SpokenService`: whether spoken words can run here
(``shared.spoken.status``: the ``speech`` extra, per language; ``/healthz`` says it) and a few
recogniser threads shared by every session. Each session of a device whose
``spoken_languages`` is not empty gets a :class:`SessionSpoken` (``SessionRegistry.spoken_for``):

* after each frame the reader hands it the ring buffer's new audio (``heard``); it waits in a
  queue of at most ``SpokenPolicy.backlog_s`` of audio. One task per session takes what is
  queued and runs the recognisers on it in the service's thread pool (``SpokenStream``), one
  call at a time, so the recogniser never blocks the socket read loop. When the recogniser
  falls behind, a client ahead of real time (a file) waits, as for the windows, while a live
  client loses the oldest audio (``hearo_gateway_spoken_dropped_seconds_total``) and the
  listener starts afresh after the gap;
* the classifier gives it each window's AudioSet tags (``note_tags``): the model's speech
  score gates the recogniser and its shout score marks a phrase as shouted;
* the phrases heard go to its ``SpokenFusion``, which is the session's ``Detector.spoken``: a
  confirmed phrase with repetition, shouting or the model's class score fires its class; a
  keyword alone never does. The ``scores`` messages show the phrases heard lately
  (``heard_lately``) and the countdown's evidence names those heard around its incident
  (``heard_between``).

A device's change of languages reaches its live sessions (``use``, from
``services.gateway.settings_watch``). A recogniser that fails stops this session's listening,
never the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.metrics import GATEWAY_METRICS
from services.gateway.ring_buffer import RingBuffer
from shared.spoken import LANGUAGES, SpokenFusion, SpokenHit, SpokenStream, WindowTags, status, summarise
from shared.spoken.listener import SAMPLE_RATE

log = logging.getLogger(__name__)

# Phrases kept per session for the scores messages and the countdown's evidence.
_KEPT_HITS = 64


class SpokenPolicy(BaseModel):
    """Spoken words in the gateway (docs/spoken.md), e.g. ``HEARO_GATEWAY_SPOKEN='{"workers": 4}'``.

    ``enabled`` (off by default) turns the recogniser on: on the speech-heavy audio of the spoken
    evaluation set it still makes false spoken detections several times an hour, so an operator
    turns it on knowingly (docs/spoken.md); ``workers``
    recogniser threads serve every session of the gateway; ``backlog_s`` is the audio a session
    may have waiting for them before a live session loses the oldest; ``finish_s`` bounds the
    wait at the end of a stream for what is still queued."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    workers: int = Field(default=2, ge=1, le=64)
    backlog_s: float = Field(default=8.0, gt=0.0)
    finish_s: float = Field(default=10.0, gt=0.0)


class SpokenService:
    """The gateway's spoken evidence: availability, the recogniser threads, and each session's
    listening (``listen``). ``close`` at shutdown."""

    def __init__(self, policy: SpokenPolicy) -> None:
        self.policy = policy
        self._status = status()
        languages = self._status["languages"]
        assert isinstance(languages, dict)
        self.available = tuple(lang for lang in LANGUAGES if languages.get(lang) == "available")
        self._executor: ThreadPoolExecutor | None = None

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` says: ``available``, ``partial`` or ``unavailable`` with the reason
        per language (the extra not installed), or ``off`` when the setting turns it off."""
        if not self.policy.enabled:
            return {"state": "off", "reason": "off unless HEARO_GATEWAY_SPOKEN='{\"enabled\": true}' (docs/spoken.md)"}
        return dict(self._status)

    def listen(self, languages: Sequence[str], session_id: str) -> SessionSpoken | None:
        """A session's listening for ``languages`` (the device's; those not installed here are
        left out), or None when spoken words cannot run on this gateway at all."""
        if not self.policy.enabled or not self.available:
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.policy.workers, thread_name_prefix="spoken")
        return SessionSpoken(self, self._executor, languages, session_id)

    def close(self) -> None:
        """Stop the recogniser threads (work queued is dropped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class SessionSpoken:
    """One session's spoken evidence (module docstring). ``fusion`` is its detector's ``spoken``."""

    def __init__(
        self, service: SpokenService, executor: ThreadPoolExecutor, languages: Sequence[str], session_id: str
    ) -> None:
        self.fusion = SpokenFusion()
        self._service = service
        self._policy = service.policy
        self._executor = executor
        self._session_id = session_id
        # Touched only by the recogniser call in flight (one at a time), never by the loop.
        self._stream = SpokenStream(())
        self._languages: tuple[str, ...] = ()
        self.use(languages)
        self._chunks: deque[tuple[float, np.ndarray]] = deque()  # (stream time it starts at, audio)
        self._queued_s = 0.0
        self._tags: list[WindowTags] = []
        self._taken = 0  # ring samples handed on (or skipped while not listening)
        self._hits: deque[SpokenHit] = deque(maxlen=_KEPT_HITS)
        self._figures = (0.0, 0.0, 0.0)
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._ending = False
        self._failed = False
        self._task = asyncio.create_task(self._run(), name=f"session-{session_id}-spoken")

    @property
    def languages(self) -> tuple[str, ...]:
        return self._languages

    def use(self, languages: Sequence[str]) -> None:
        """Listen for ``languages`` (those installed here) from the next audio on; none: off."""
        self._languages = tuple(lang for lang in languages if lang in self._service.available)

    async def heard(self, ring: RingBuffer, ahead_of_real_time: bool) -> None:
        """Queue the ring's audio since the last call for the recognisers. When the queue holds
        ``backlog_s``, a client ahead of real time waits for room; a live one loses the oldest."""
        new = ring.total_samples - self._taken
        self._taken = ring.total_samples
        if new <= 0 or not self._languages or self._failed:
            return
        clip = ring.snapshot(new / ring.sample_rate)
        backlog = self._policy.backlog_s
        while ahead_of_real_time and self._queued_s >= backlog and not self._task.done():
            self._room.clear()
            await self._room.wait()
        self._chunks.append((clip.start_s, clip.samples))
        self._queued_s += clip.duration_s
        dropped = 0.0
        while self._queued_s > backlog and len(self._chunks) > 1:
            _, oldest = self._chunks.popleft()
            self._queued_s -= oldest.size / ring.sample_rate
            dropped += oldest.size / ring.sample_rate
        if dropped:
            GATEWAY_METRICS.spoken_dropped(dropped)
        self._wake.set()

    def note_tags(self, window_end_s: float, tags: Sequence[tuple[str, float]]) -> None:
        """The model's tags for the window ending at ``window_end_s`` (passed on with the next audio)."""
        if self._languages and tags:
            self._tags.append((window_end_s, list(tags)))
            del self._tags[:-64]  # windows the recogniser has not caught up with: the latest matter

    def heard_lately(self, stream_time_s: float) -> str | None:
        """"heard: 'help me' ×2" for the phrases of the fusion's window before ``stream_time_s``."""
        window_s = self.fusion.config.window_s
        return summarise(h for h in self._hits if stream_time_s - h.end_s <= window_s) or None

    def heard_between(self, from_s: float, to_s: float) -> list[SpokenHit]:
        """The phrases heard from ``from_s`` to ``to_s`` (stream time), oldest first."""
        return [h for h in self._hits if from_s <= h.end_s <= to_s]

    async def finish(self) -> None:
        """The stream ended: recognise what is queued and the open speech segment, waiting at
        most ``finish_s``, so the detector's last windows take the last phrases."""
        self._ending = True
        self._wake.set()
        try:
            async with asyncio.timeout(self._policy.finish_s):
                await asyncio.wait({self._task})
        except TimeoutError:
            log.warning("session %s: spoken words not finished in %g s", self._session_id, self._policy.finish_s)

    async def close(self) -> None:
        """Stop listening (a recogniser call in flight finishes in its thread, unheard)."""
        self._task.cancel()
        await asyncio.wait({self._task})

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            ending = self._ending
            chunks, self._chunks = list(self._chunks), deque()
            self._queued_s = 0.0
            self._room.set()
            tags, self._tags = self._tags, []
            if not chunks and not ending:
                continue
            try:
                hits = await loop.run_in_executor(self._executor, self._recognise, self._languages, chunks, tags, ending)
            except Exception:
                # A recogniser failure stops this session's listening; the session goes on.
                log.exception("session %s: spoken words stopped", self._session_id)
                self._failed = True
                self._room.set()
                return
            self._heard(hits)
            if ending:
                return

    def _recognise(
        self, languages: tuple[str, ...], chunks: list[tuple[float, np.ndarray]], tags: list[WindowTags], ending: bool
    ) -> list[SpokenHit]:
        """In a recogniser thread: the queued audio, contiguous pieces fed as one."""
        stream = self._stream
        stream.use(languages)
        hits: list[SpokenHit] = []
        for start_s, audio in _joined(chunks):
            hits += stream.feed(start_s, audio, tags)
            tags = []
        if ending:
            hits += stream.flush()
        return hits

    def _heard(self, hits: list[SpokenHit]) -> None:
        cpu_s, heard_s, passed_s = self._stream.figures()
        before = self._figures
        GATEWAY_METRICS.spoken_listened(heard_s - before[1], passed_s - before[2], cpu_s - before[0])
        self._figures = (cpu_s, heard_s, passed_s)
        if not hits:
            return
        hits.sort(key=lambda h: h.end_s)
        self.fusion.hear(hits)
        self._hits.extend(hits)
        for hit in hits:
            GATEWAY_METRICS.spoken_phrase(hit.class_key, hit.language)
        log.info("session %s: heard %s", self._session_id, summarise(hits))


def _joined(chunks: list[tuple[float, np.ndarray]]) -> list[tuple[float, np.ndarray]]:
    """Runs of chunks that follow on from each other, each as one array."""
    runs: list[tuple[float, list[np.ndarray]]] = []
    end_s = None
    for start_s, audio in chunks:
        if end_s is not None and abs(start_s - end_s) < 1e-3:
            runs[-1][1].append(audio)
        else:
            runs.append((start_s, [audio]))
        end_s = start_s + audio.size / SAMPLE_RATE
    return [(start_s, np.concatenate(parts)) for start_s, parts in runs]

