"""Recognises the standard alarm sound patterns in a live stream: signal processing, no model.

An AudioSet tagger hears a smoke alarm's beeps but not their rhythm, and the rhythm is what
the standards fix: ISO 8201 / NFPA 72 temporal-three (T3, smoke: three 0.5 s pulses 0.5 s
apart, then 1.5 s off) and UL 2034 / NFPA 720 temporal-four (T4, carbon monoxide: four
0.1 s pulses 0.1 s apart, then about 5 s off). This detector looks for exactly that.

How a stream becomes matches, every stage incremental:

1. frames: 32 ms Hann windows every 10 ms, power spectrum by ``rfft`` (batched: frames wait
   while no match could come due in them, up to 0.15 s); the channels are the FFT bins
   between ``min_tone_hz`` and ``max_tone_hz`` (a piezo's 2.8-3.5 kHz fundamental and the
   520 Hz low-frequency square wave both fall inside; harmonics above 8 kHz fold away at
   16 kHz and do not matter);
2. noise floor per channel: the minimum over the last 2 s of 100 ms mean powers, so it
   follows speech, TV or music underneath, and rises to meet a tone that never stops;
3. onsets: a bin that is a spectral peak, ``tonality_db`` above its neighbours,
   ``onset_snr_db`` above its floor and ``onset_rise_db`` above its own level 30 ms
   earlier (sounders switch on; voices and music mostly swell) starts a sounding, which
   follows the peak to a neighbouring bin and lasts until the level sinks under the floor
   plus ``release_snr_db`` or stays ``release_drop_db`` under a slowly sinking reference
   (a room's tail, which sinks faster);
4. pulses: a sounding is cut at each fresh onset inside it, seen as a dip
   ``onset_rise_db`` deep or a rise as steep as an onset: in a reverberant room the tail
   of a T4 pulse fills the 0.1 s gap, so four pulses sound as one with dips. Each piece
   keeps the frames within ``release_drop_db`` of its plateau, so tails, swells and rooms
   that sink a steady tone under its onset do not move its ends;
5. tracks: pulses are grouped by pitch (within ``frequency_tolerance``): an alarm keeps
   its pitch, speech and music do not;
6. patterns: when a track's newest pulse completes a group (3 for T3, 4 for T4), the
   track's history is read backwards against the standard's timing (``rhythm``:
   ``timing_tolerance`` on each pulse, gap and long gap, as the standards allow 10 % but
   real devices, phone microphones and rooms need more, hence 30 % by default; pulses alike
   in level, pitch and beat). A match needs ``temporal3_cycles`` / ``temporal4_cycles``
   groups in a row: one group of three beeps is how appliances say "done", two at the
   standard rhythm is an alarm. Fewer groups, after a quiet and with nothing sounding at
   their pitch by the time the next beat would have begun, make a *partial* match: the
   start of an alarm, or an appliance, so it is evidence to weigh with the model's scores
   (the ``Detector`` lowers the class's threshold for a while), never a detection alone;
7. output: one match per completed group while the pattern continues. Several tracks may
   complete the same group (a square wave's odd harmonics each make a track); the match
   names the lowest of those within 20 dB of the loudest (the fundamental, unless speech
   or music masks it) and the others are dropped, as is a partial match where a full one
   completes the same group.

Time is stream time (seconds of audio pushed since the detector was made), so the matches
depend only on the samples, never on how they were chunked or how fast they arrived.

Modules, one stage or noun each: ``config`` (the parameters and ``AlarmPatternMatch``),
``detector`` (stages 1 to 4 and the public ``AlarmPatternDetector``), ``spectral`` (stages 2
and 3, compiled), ``soundings`` (stage 4's per-frame following, compiled), ``pieces`` (stage 4's
cutting of an ended sounding into pulses, compiled), ``compiling`` (numba,
ahead of time and cached), ``tracks`` (stages 5 and 7) and ``rhythm`` (stage 6). The gateway's
sessions and ``hearo eval`` both use the detector from here, so a clip is heard exactly as a
live stream is.
"""

from __future__ import annotations

from shared.alarm_patterns.config import AlarmPatternConfig, AlarmPatternMatch
from shared.alarm_patterns.detector import AlarmPatternDetector
from shared.alarm_patterns.rhythm import PatternName

__all__ = ["AlarmPatternConfig", "AlarmPatternDetector", "AlarmPatternMatch", "PatternName"]
