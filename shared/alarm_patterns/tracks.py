"""Stages 5 and 7 of the alarm pattern detector (the package docstring tells the whole
pipeline): pulses filed by pitch into tracks, each track read for the standard rhythms
(``rhythm``) as a pulse completes a group, and the candidates held a moment so that one
group makes one match, named after the lowest loud track that completed it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.alarm_patterns.config import MAX_CYCLES_KEPT, AlarmPatternConfig, AlarmPatternMatch
from shared.alarm_patterns.rhythm import PATTERNS, TEMPORAL4, Candidate, PatternName, Pulse, RhythmReader

_MAX_TRACKS = 16
_HOLD_S = 0.15  # wait this long for other tracks completing the same group ...
_HARMONICS_DB = 20.0  # ... and name the lowest this close to the loudest (a square's 3rd: -10 dB)
_DEDUPE_S = 1.0  # one match per group however many tracks complete it, and no partial one beside it


class Sounding(NamedTuple):
    """A pulse still sounding (the detector's): the frame it began at and its latest pitch."""

    onset_frame: int
    hz: float


@dataclass(eq=False)  # a track is itself, not its contents: list.remove compares by identity
class _Track:
    tone_hz: float
    pulses: deque[Pulse]


@dataclass(frozen=True)
class _Held:
    candidate: Candidate
    track: _Track
    newest: Pulse  # the track's newest piece when the candidate was made


@dataclass
class _Hold:
    deadline_frame: int
    held: list[_Held] = field(default_factory=list)


class PatternTracks:
    """One stream's tracks and held candidates; ``add`` each pulse as it ends, ``release``
    at every frame while ``holding`` (or anything sounds)."""

    def __init__(
        self,
        config: AlarmPatternConfig,
        rhythm: RhythmReader,
        frame_s: float,
        hz_tolerance: Callable[[float], float],
        frame_time: Callable[[int], float],
    ) -> None:
        self.config = config
        self._rhythm = rhythm
        self._frame_s = frame_s
        self._hz_tolerance = hz_tolerance
        self._frame_time = frame_time
        self._tracks: list[_Track] = []
        self._holds: dict[PatternName, _Hold] = {}
        self._last_reported: dict[tuple[PatternName, bool], float] = {}  # (pattern, partial) -> time

    @property
    def holding(self) -> bool:
        """Some candidate waits for its hold to end."""
        return bool(self._holds)

    def earliest_release(self, frame: int) -> int:
        """The first frame at which ``release`` may return a match while the frames from
        ``frame`` on are still to be heard: a held candidate's deadline, or that of one made
        at ``frame`` (every candidate is held at least _HOLD_S)."""
        soonest = frame + round(_HOLD_S / self._frame_s)
        return min([soonest, *(hold.deadline_frame for hold in self._holds.values())])

    def add(self, pulse: Pulse, frame: int) -> None:
        """File ``pulse`` under its pitch and look for the patterns there."""
        idle_s = TEMPORAL4.long_off_s * (1 + self.config.timing_tolerance) + 1.0
        self._tracks = [t for t in self._tracks if pulse.onset_s - t.pulses[-1].offset_s < idle_s]
        track = min(self._tracks, key=lambda t: abs(t.tone_hz - pulse.tone_hz), default=None)
        if track is not None and abs(track.tone_hz - pulse.tone_hz) <= self._hz_tolerance(pulse.tone_hz):
            if pulse.peak_db < track.pulses[-1].peak_db - self.config.level_spread_db:
                return  # quieter than the track's pulses: something else at that pitch
        elif any(self._rhythm.on_ok(spec, pulse) for spec in PATTERNS):
            if len(self._tracks) >= _MAX_TRACKS:  # drop the least promising: fewest pulses, then stalest
                self._tracks.remove(min(self._tracks, key=lambda t: (len(t.pulses), t.pulses[-1].offset_s)))
            track = _Track(pulse.tone_hz, deque(maxlen=MAX_CYCLES_KEPT * TEMPORAL4.pulses + 1))
            self._tracks.append(track)
        else:
            return  # could start no pattern and belongs to none
        track.tone_hz = 0.5 * (track.tone_hz + pulse.tone_hz)
        track.pulses.append(pulse)
        cycles = (self.config.temporal3_cycles, self.config.temporal4_cycles)
        for spec, needed in zip(PATTERNS, cycles):
            candidate = self._rhythm.match(spec, needed, track.pulses)
            if candidate is not None:
                self._hold(_Held(candidate, track, track.pulses[-1]), frame)

    def _hold(self, held: _Held, frame: int) -> None:
        """Hold a candidate for the others completing the same group (harmonics, other rooms'
        paths); a partial one also until the next pulse in a row would have begun, to see
        that none did: a group is whole, not the start of a longer run of beeps."""
        candidate = held.candidate
        name = candidate.spec.name
        # A full match supersedes a partial one of the same group; a partial one adds nothing.
        kinds = (False, True) if candidate.partial else (False,)
        for last in (self._last_reported.get((name, partial)) for partial in kinds):
            if last is not None and candidate.stream_time_s - last < _DEDUPE_S:
                return
        wait_s = _HOLD_S + (self._rhythm.longest_gap_s(candidate.spec) if candidate.partial else 0.0)
        deadline = frame + round(wait_s / self._frame_s)
        hold = self._holds.get(name)
        if hold is None:
            hold = self._holds[name] = _Hold(deadline)
        elif all(h.candidate.partial for h in hold.held):
            # A full match waits for its harmonics as if alone; a partial one for its own gap.
            hold.deadline_frame = deadline if not candidate.partial else max(deadline, hold.deadline_frame)
        hold.held.append(held)

    def release(self, frame: int, sounding: Iterable[Sounding]) -> list[AlarmPatternMatch]:
        """The matches whose hold ends by ``frame``; ``sounding``: the pulses still sounding."""
        matches = []
        for name in [n for n, hold in self._holds.items() if frame >= hold.deadline_frame]:
            held = self._holds.pop(name).held
            full = [h.candidate for h in held if not h.candidate.partial]
            candidates = full or [h.candidate for h in held if self._whole(h, sounding)]
            if not candidates:
                continue
            # Harmonics of one sounder each make a track; name the lowest of the loud ones.
            loudest = max(c.peak_db for c in candidates)
            audible = [c for c in candidates if c.peak_db >= loudest - _HARMONICS_DB]
            best = min(audible, key=lambda c: c.tone_hz)
            self._last_reported[(name, best.partial)] = best.stream_time_s
            matches.append(
                AlarmPatternMatch(
                    pattern=best.spec.name,
                    class_key=best.spec.class_key,
                    confidence=best.confidence,
                    stream_time_s=best.stream_time_s,
                    tone_hz=best.tone_hz,
                    partial=best.partial,
                )
            )
        return matches

    def _whole(self, held: _Held, sounding: Iterable[Sounding]) -> bool:
        """Nothing sounded at the candidate's pitch after its group: no piece was filed on its
        track since (a fourth beep, or the last one still growing) and none is sounding."""
        if held.track.pulses[-1] is not held.newest:
            return False
        tone_hz = held.candidate.tone_hz
        tolerance = self._hz_tolerance(tone_hz)
        return not any(
            self._frame_time(active.onset_frame) > held.candidate.stream_time_s
            and abs(active.hz - tone_hz) <= tolerance
            for active in sounding
        )
