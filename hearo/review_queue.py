"""The interactive review queue of ``hearo review``: one segment at a time in the terminal, one
key per label, the next segment's audio fetched while the reviewer listens to this one.

Keys (:func:`shared.review.read_key`): ``c`` confirm the system's class, ``0``-``8`` a class
by id, ``n`` normal (a false alarm), ``u`` unclear, ``s`` skip, ``b`` back, ``q`` quit. A
terminal gives them without Enter; from a pipe each character is one key (whitespace
ignored), and the end of the input quits.

The audio is written as WAV into a private folder removed when the queue ends (it is a
home's audio) and either played with ``--play-with CMD`` (``CMD <file.wav>``, stopped when
the reviewer moves on) or named so the reviewer can open it.
"""

from __future__ import annotations

import asyncio
import io
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from shared.clips import ClipStore
from shared.db import Database
from shared.review import Move, ReviewKey, Segment, SegmentGone, read_key, read_segment_audio, record_review
from shared.taxonomy import CLASSES

__all__ = ["QueueSummary", "ReviewQueue", "read_terminal_key", "score_strip"]

_BARS = "▁▂▃▄▅▆▇█"
_STRIP_POINTS = 48


@dataclass
class QueueSummary:
    labelled: int = 0
    skipped: int = 0
    gone: int = 0


def score_strip(values: list[float]) -> str:
    """Scores in [0, 1] as a strip of bars (the last ``_STRIP_POINTS`` of them)."""
    shown = values[-_STRIP_POINTS:]
    return "".join(_BARS[min(int(max(v, 0.0) * len(_BARS)), len(_BARS) - 1)] for v in shown)


def read_terminal_key() -> str:
    """One key from stdin: without Enter on a terminal; from a pipe the next non-blank
    character. "" at the end of the input."""
    if sys.stdin.isatty():
        import termios
        import tty

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            return sys.stdin.read(1)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    while True:
        char = sys.stdin.read(1)
        if not char or not char.isspace():
            return char


class ReviewQueue:
    """Reviews ``segments`` in order as ``reviewer``; ``keys`` gives one key per call ("" ends)."""

    def __init__(
        self,
        db: Database,
        store: ClipStore,
        segments: list[Segment],
        *,
        reviewer: str,
        audio_dir: Path,
        keys: Callable[[], str] = read_terminal_key,
        say: Callable[[str], None] = print,
        play_with: str | None = None,
    ) -> None:
        self.db, self.store, self.segments = db, store, segments
        self.reviewer, self.audio_dir, self.keys, self.say = reviewer, audio_dir, keys, say
        self.player = shlex.split(play_with) if play_with else None
        self._playing: subprocess.Popen[bytes] | None = None

    async def run(self) -> QueueSummary:
        summary = QueueSummary()
        self.say("classes: " + "  ".join(f"{c.id} {c.key}" for c in CLASSES))
        prepared: dict[int, asyncio.Task[Path]] = {}
        index = 0
        try:
            while 0 <= index < len(self.segments):
                segment = self.segments[index]
                task = prepared.pop(index, None) or asyncio.create_task(self._prepare(segment))
                try:
                    wav = await task
                except SegmentGone:
                    self.say(f"incident {segment.incident_id}: no longer reviewable (deleted or past retention)")
                    summary.gone += 1
                    del self.segments[index]
                    continue
                following = index + 1
                if following < len(self.segments) and following not in prepared:
                    # Preloaded while the reviewer listens: the next segment shows at once.
                    prepared[following] = asyncio.create_task(self._prepare(self.segments[following]))
                self._show(index, segment, wav)
                move = await self._ask(segment)
                if move is None:
                    break
                if move.move is Move.LABEL:
                    assert move.label is not None
                    try:
                        await record_review(self.db, segment.incident_id, move.label, reviewer=self.reviewer)
                    except SegmentGone:
                        self.say("  no longer reviewable; not recorded")
                        summary.gone += 1
                    else:
                        self.say(f"  recorded: {move.label}")
                        summary.labelled += 1
                    index += 1
                elif move.move is Move.SKIP:
                    summary.skipped += 1
                    index += 1
                elif move.move is Move.BACK:
                    index = max(index - 1, 0)
                else:
                    break
        finally:
            self._stop_playing()
            # A preload still under way is let finish (a clip read, well under a second), not
            # cancelled: cut off inside a database call it was left to asyncio.run's shutdown,
            # after the caller had closed the database, and the CLI hung there (a CI run did).
            await asyncio.gather(*prepared.values(), return_exceptions=True)
        return summary

    async def _prepare(self, segment: Segment) -> Path:
        flac = await read_segment_audio(self.db, self.store, segment.incident_id, reviewer=self.reviewer, via="review")
        wav = self.audio_dir / f"{segment.incident_id}.wav"
        await asyncio.to_thread(_write_wav, flac, wav)
        return wav

    async def _ask(self, segment: Segment) -> ReviewKey | None:
        while True:
            key = await asyncio.to_thread(self.keys)
            if key == "":
                return None
            move = read_key(key, segment.class_key)
            if move is not None:
                return move
            self.say(f"  '{key}' is not a key: c 0-8 n u s b q")

    def _show(self, index: int, segment: Segment, wav: Path) -> None:
        state = segment.state + (f" ({segment.cancel_kind})" if segment.cancel_kind else "")
        consent = "donated for training" if segment.exportable else "report: precision only, not exported"
        self.say(f"\n[{index + 1}/{len(self.segments)}] incident {segment.incident_id}  {segment.detected_at:%Y-%m-%d %H:%M:%S}")
        self.say(f"  decision: {segment.kind} · {segment.class_key} ({segment.confidence:.2f}) · {state} · {consent}")
        by_class: dict[str, list[float]] = {}
        for point in segment.timeline:
            by_class.setdefault(str(point["class"]), []).append(float(point["score"]))
        for key, average in segment.averages.items():
            self.say(f"  {key:<9} avg {average:.2f}  {score_strip(by_class[key])}")
        if segment.review is not None:
            self.say(f"  last label: {segment.review.label} by {segment.review.reviewer} ({segment.reviews} in all)")
        self._stop_playing()
        if self.player is not None:
            try:
                self._playing = subprocess.Popen([*self.player, str(wav)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self.say(f"  playing {wav.name} ({segment.clip.duration_s:.0f} s)")
            except OSError as exc:
                self.say(f"  --play-with could not start ({exc}); audio: {wav}")
        else:
            self.say(f"  audio: {wav} ({segment.clip.duration_s:.0f} s)")
        self.say(f"  [c] confirm {segment.class_key}  [0-8] class  [n] normal  [u] unclear  [s] skip  [b] back  [q] quit")

    def _stop_playing(self) -> None:
        if self._playing is not None and self._playing.poll() is None:
            self._playing.terminate()
        self._playing = None


def _write_wav(flac: bytes, path: Path) -> None:
    audio, rate = sf.read(io.BytesIO(flac), dtype="int16")
    sf.write(str(path), audio, rate, subtype="PCM_16")
