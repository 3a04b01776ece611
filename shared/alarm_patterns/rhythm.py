"""Reads the standard alarm rhythms in the pulses heard at one pitch: the pattern stage of
the alarm pattern detector (the ``shared.alarm_patterns`` docstring tells the whole pipeline).

When a pulse completes a group (3 for temporal-three, 4 for temporal-four), the track's
pulses are read backwards: each pulse length, short gap and long gap lies within
``timing_tolerance`` of the standard, plus ``reverb_allowance_s`` by which a room may move a
pulse's end either way (onsets are not moved by rooms, so onset-to-onset periods get no
allowance). The pulses must be alike: within ``level_spread_db`` of each other, one pitch,
and on a regular beat (periods within 10 % of their median). The oldest group may lack its
first pulse (the stream started mid-group).

- ``needed`` groups in a row make a match: two at the standard rhythm is an alarm.
- Fewer (at least one complete group) make a *partial* match, and only after a quiet at
  least the pattern's long gap, as an alarm starts (``tracks`` then waits to hear
  that the group is whole: nothing at its pitch by the next beat). One group of three beeps
  is also how appliances say "done", so a partial match is evidence for the detector to
  weigh with the model's scores, never a detection by itself.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.taxonomy import by_key

PatternName = Literal["temporal3", "temporal4"]

_REGULARITY = 0.1  # a match's onset-to-onset periods differ from their median by at most this
_SPLIT_GAP_S = 0.02  # pieces this close, the second too soon to be the next pulse, are one


@dataclass(frozen=True)
class PatternSpec:
    """A standard alarm rhythm: ``pulses`` per group, then a long gap."""

    name: PatternName
    class_key: str
    pulses: int  # per group
    on_s: float
    gap_s: float  # between the pulses of a group
    long_off_s: float  # from a group's last pulse to the next group's first
    bridge_s: float  # pieces closer than this are one pulse with a dip in it


TEMPORAL3 = PatternSpec("temporal3", by_key("fire").key, 3, 0.5, 0.5, 1.5, bridge_s=0.2)  # ISO 8201
TEMPORAL4 = PatternSpec("temporal4", by_key("gas").key, 4, 0.1, 0.1, 5.0, bridge_s=0.0)  # UL 2034
PATTERNS = (TEMPORAL3, TEMPORAL4)


@dataclass(frozen=True)
class Pulse:
    onset_s: float
    offset_s: float
    tone_hz: float
    peak_db: float
    snr_db: float
    steady: bool  # kept its pitch throughout

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


@dataclass(frozen=True)
class Candidate:
    """A group completing ``spec``'s rhythm on one track; ``partial``: fewer groups than needed."""

    spec: PatternSpec
    confidence: float
    stream_time_s: float
    tone_hz: float
    peak_db: float
    partial: bool


@dataclass(frozen=True)
class RhythmReader:
    """Judges a track's pulses against the standard rhythms, within the given tolerances.

    ``timing_tolerance`` is relative; ``frame_s`` (the analysis hop) is added to every timing
    slack; ``hz_tolerance`` gives the pitch difference still heard as one tone; loudness
    counts towards the confidence from ``onset_snr_db`` over the floor.
    """

    timing_tolerance: float
    reverb_allowance_s: float
    level_spread_db: float
    onset_snr_db: float
    frame_s: float
    hz_tolerance: Callable[[float], float]

    def match(self, spec: PatternSpec, needed: int, pulses: Sequence[Pulse]) -> Candidate | None:
        """A candidate if the newest of a track's ``pulses`` completes a group of ``spec``: a
        full one if it is the ``needed``-th group in a row, a partial one if fewer follow a
        quiet (see the module docstring).

        Pieces of one pulse (split by a dip) are joined first. Pulses far quieter than the
        newest are something else at that pitch: they are neither joined nor counted.
        """
        joins = functools.partial(self.joins, spec)
        newest = bridged(last_run(pulses, joins), joins)[0]
        if not self.on_ok(spec, newest):
            return None  # cheap early exit: the newest pulse cannot be this pattern's
        quietest_db = newest.peak_db - self.level_spread_db
        loud = bridged([p for p in pulses if p.peak_db >= quietest_db], joins)
        groups, first = self._groups(spec, loud)
        if not groups or len(groups[0]) != spec.pulses:
            return None
        partial = len(groups) < needed
        if partial and first > 0 and not self.quiet_before(spec, loud[first - 1], loud[first]):
            return None
        recent = [p for group in groups[:needed] for p in group]
        if not self._alike(spec, groups[:needed], recent):
            return None
        return Candidate(
            spec=spec,
            confidence=self._confidence(spec, min(needed, len(groups)), groups),
            stream_time_s=groups[0][-1].offset_s,
            tone_hz=statistics.median(p.tone_hz for p in recent),
            peak_db=statistics.median(p.peak_db for p in recent),
            partial=partial,
        )

    def _groups(self, spec: PatternSpec, pulses: list[Pulse]) -> tuple[list[list[Pulse]], int]:
        """The groups in a row that end with the newest pulse, newest first (the newest may be
        incomplete: the caller checks), and the index of the oldest grouped pulse."""
        groups: list[list[Pulse]] = []
        end = len(pulses) - 1
        first = len(pulses)
        while end >= 0 and self.on_ok(spec, pulses[end]):
            start = end
            while (
                start > 0
                and end - start + 1 <= spec.pulses
                and self.on_ok(spec, pulses[start - 1])
                and self.gap_ok(spec, pulses[start - 1], pulses[start])
            ):
                start -= 1
            size = end - start + 1
            if size > spec.pulses or (size < spec.pulses and not groups):
                break  # too many in a row, or the newest group is not complete yet
            if size < spec.pulses:
                if size >= spec.pulses - 1:  # the oldest group, heard from its second pulse
                    groups.append(pulses[start : end + 1])
                    first = start
                break
            groups.append(pulses[start : end + 1])
            first = start
            if start == 0 or not self.long_gap_ok(spec, pulses[start - 1], pulses[start]):
                break
            end = start - 1
        return groups, first

    # A room moves pulse ends both ways (a tail lengthens a pulse; the tail's interference with
    # the direct sound can sink it early) but leaves onsets where they were: durations and
    # gaps get the reverb allowance, onset-to-onset periods do not.

    def _slack(self, nominal: float, allowance: float = 0.0) -> float:
        return nominal * self.timing_tolerance + self.frame_s + allowance

    def _within(self, value: float, nominal: float, allowance: float = 0.0) -> bool:
        """``value`` is ``nominal`` within the timing tolerance, one frame, and ``allowance``."""
        slack = self._slack(nominal, allowance)
        return nominal - slack <= value <= nominal + slack

    def joins(self, spec: PatternSpec, before: Pulse, after: Pulse) -> bool:
        """``after`` is the rest of ``before``: a dip split it (a room's interference, noise).

        Either the gap is shorter than any gap of the pattern, or ``after`` followed at once
        and too soon after ``before``'s onset to be the pattern's next pulse.
        """
        gap = after.onset_s - before.offset_s
        if gap < spec.bridge_s:
            return True
        soonest = (spec.on_s + spec.gap_s) * (1 - self.timing_tolerance) - self.frame_s
        return gap <= _SPLIT_GAP_S and after.onset_s - before.onset_s < soonest

    def on_ok(self, spec: PatternSpec, pulse: Pulse) -> bool:
        return pulse.steady and self._within(pulse.duration_s, spec.on_s, self.reverb_allowance_s)

    def gap_ok(self, spec: PatternSpec, before: Pulse, after: Pulse) -> bool:
        gap = after.onset_s - before.offset_s
        period = after.onset_s - before.onset_s
        return self._within(gap, spec.gap_s, self.reverb_allowance_s) and self._within(
            period, spec.on_s + spec.gap_s
        )

    def long_gap_ok(self, spec: PatternSpec, before: Pulse, after: Pulse) -> bool:
        gap = after.onset_s - before.offset_s
        return self._within(gap, spec.long_off_s, self.reverb_allowance_s)

    def longest_gap_s(self, spec: PatternSpec) -> float:
        """After a group's last pulse, the next pulse in a row would begin within this."""
        return spec.gap_s + self._slack(spec.gap_s, self.reverb_allowance_s)

    def quiet_before(self, spec: PatternSpec, before: Pulse, after: Pulse) -> bool:
        """At least the pattern's long gap (within the tolerances) passed between the two."""
        gap = after.onset_s - before.offset_s
        return gap >= spec.long_off_s - self._slack(spec.long_off_s, self.reverb_allowance_s)

    def _alike(self, spec: PatternSpec, groups: list[list[Pulse]], pulses: list[Pulse]) -> bool:
        """An alarm's pulses are alike: equally loud, one pitch, on a steady beat.

        Each interval alone may stray by the timing tolerance (devices differ); within one
        device the beat is regular, which chance sequences of speech or music sounds are not.
        """
        peaks = [p.peak_db for p in pulses]
        if max(peaks) - min(peaks) > self.level_spread_db:
            return False
        tones = [p.tone_hz for p in pulses]
        centre = statistics.median(tones)
        if max(abs(t - centre) for t in tones) > self.hz_tolerance(centre):
            return False
        periods = [b.onset_s - a.onset_s for group in groups for a, b in zip(group, group[1:])]
        beat = statistics.median(periods)
        jitter = _REGULARITY * (spec.on_s + spec.gap_s) + self.frame_s
        return max(abs(p - beat) for p in periods) <= jitter

    def _confidence(self, spec: PatternSpec, needed: int, groups: list[list[Pulse]]) -> float:
        tol = self.timing_tolerance
        deviations = []
        for newer, older in zip(groups, groups[1:] + [[]]):
            for a, b in zip(newer, newer[1:]):
                deviations.append(abs((b.onset_s - a.onset_s) / (spec.on_s + spec.gap_s) - 1.0))
            if older:
                deviations.append(abs((newer[0].onset_s - older[-1].offset_s) / spec.long_off_s - 1.0))
        timing = 1.0 - min(1.0, statistics.fmean(deviations) / tol) if deviations else 0.0
        snr = statistics.median(p.snr_db for g in groups for p in g)
        loudness = min(1.0, max(0.0, (snr - self.onset_snr_db) / 20.0))
        persistence = min(1.0, (len(groups) - needed) / 2.0)
        return round(0.4 + 0.3 * timing + 0.2 * loudness + 0.1 * persistence, 4)


def bridged(pulses: Sequence[Pulse], joins: Callable[[Pulse, Pulse], bool]) -> list[Pulse]:
    """``pulses`` with the pieces of one pulse (by ``joins``) made one again."""
    out: list[Pulse] = []
    for pulse in pulses:
        if out and joins(out[-1], pulse):
            first = out[-1]
            main = first if first.duration_s >= pulse.duration_s else pulse  # its pitch counts
            out[-1] = Pulse(
                onset_s=first.onset_s,
                offset_s=pulse.offset_s,
                tone_hz=main.tone_hz,
                peak_db=max(first.peak_db, pulse.peak_db),
                snr_db=max(first.snr_db, pulse.snr_db),
                steady=main.steady,
            )
        else:
            out.append(pulse)
    return out


def last_run(pulses: Sequence[Pulse], joins: Callable[[Pulse, Pulse], bool]) -> list[Pulse]:
    """The newest pulse with the pieces ``bridged`` would join to it."""
    start = len(pulses) - 1
    while start > 0 and joins(pulses[start - 1], pulses[start]):
        start -= 1
    return [pulses[i] for i in range(start, len(pulses))]
