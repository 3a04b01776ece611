"""The daycare cues heard in the sound itself (shared/daycare/acoustic.py), on generated sound:
the pitch track, crying against a held note and a child's syllables, adult shouting against a
quiet voice and a cry, blows against a quiet knock, a sound that goes on and a syllable starting,
window-by-window analysis against a whole stream, and a daycare session that raises on the
sound alone (no tags), in its rule and through a live gateway session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from hearo.data.daycare_scenes import child_cry
from services.gateway.ring_buffer import RingBuffer
from services.gateway.session_profile import SessionProfile
from shared.daycare import AcousticCues, Cue, DaycarePolicy
from shared.daycare.acoustic import AUDIO_RATE, pitch_track
from shared.db import Device
from shared.device_modes import DeviceProfile
from shared.incident_state import IncidentKind
from tests.gateway_support import FakeClassifier, pcm16, send_audio, session
from tests.unit.test_session_incidents import Harness, is_type, make_harness, receive_until

SR = AUDIO_RATE
FLOOR = 10 ** (-60 / 20)  # a quiet room's noise, -60 dBFS


def room(seconds: float, seed: int = 0) -> np.ndarray:
    return (FLOOR * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def voice(f0: float, seconds: float, level_db: float, glide: float = 0.0, seed: int = 1) -> np.ndarray:
    """A voiced sound: eight harmonics of ``f0`` (moving by ``glide`` of it over the sound), 20 ms
    fades, RMS at ``level_db`` dBFS."""
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1.0 + glide * t / max(seconds, 1e-9))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 9))
    wave *= np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    wave += 0.01 * np.random.default_rng(seed).standard_normal(t.size) * np.abs(wave).max()
    return (wave / np.sqrt(np.mean(wave**2)) * 10 ** (level_db / 20)).astype(np.float32)


def burst(seconds: float, level_db: float, decay_s: float | None, seed: int = 2) -> np.ndarray:
    """Broadband noise at ``level_db`` dBFS peak RMS, dying away with ``decay_s`` (None: steady)."""
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size)
    if decay_s is not None:
        noise *= np.exp(-t / decay_s)
    return (noise * 10 ** (level_db / 20)).astype(np.float32)


def place(audio: np.ndarray, sound: np.ndarray, at_s: float) -> np.ndarray:
    out = audio.copy()
    start = int(at_s * SR)
    out[start : start + sound.size] += sound[: max(out.size - start, 0)]
    return out


def window_levels(audio: np.ndarray) -> list[dict[Cue, float]]:
    """Each window's cues (2 s windows every 0.5 s), as a session hears the stream."""
    cues = AcousticCues()
    return [cues.levels(float(end), audio, 0.0) for end in np.arange(2.0, audio.size / SR + 1e-9, 0.5)]


def peak(audio: np.ndarray, cue: Cue) -> float:
    return max(levels[cue] for levels in window_levels(audio))


@pytest.mark.parametrize("f0", [150.0, 220.0, 450.0, 700.0])
def test_the_pitch_track_finds_a_voice_and_calls_noise_and_silence_aperiodic(f0: float) -> None:
    pitch, aperiodicity = pitch_track(voice(f0, 0.5, -20.0))
    steady = slice(5, -5)
    assert np.median(pitch[steady]) == pytest.approx(f0, rel=0.03)
    assert np.median(aperiodicity[steady]) < 0.1
    _, noisy = pitch_track(burst(0.5, -20.0, None))
    assert np.median(noisy) > 0.3
    _, silent = pitch_track(np.zeros(SR // 2, dtype=np.float32))
    assert np.all(silent == 1.0)


def test_crying_is_heard_and_a_held_note_or_a_childs_syllables_are_not() -> None:
    cry = child_cry(np.random.default_rng(3), 6.0)
    cry = cry / np.sqrt(np.mean(cry**2)) * 10 ** (-25 / 20)
    assert peak(place(room(9), cry, 1.0), Cue.CRYING) == 1.0
    # A beep or a held note: long and high, but one pitch.
    assert peak(place(room(6), voice(450.0, 3.0, -25.0), 1.0), Cue.CRYING) == 0.0
    # A child talking: high, gliding, but in syllables of 0.25 s.
    talk = room(6)
    for i in range(12):
        talk = place(talk, voice(400.0, 0.25, -25.0, glide=0.2, seed=i), 1.0 + 0.35 * i)
    assert peak(talk, Cue.CRYING) == 0.0


def test_a_loud_adult_voice_is_shouting_and_a_quiet_voice_or_a_cry_is_not() -> None:
    def speech(level_db: float) -> np.ndarray:
        audio = room(8)
        for i in range(10):  # syllables of 0.2 s at an adult's raised pitch
            audio = place(audio, voice(230.0, 0.2, level_db, glide=-0.1, seed=i), 2.0 + 0.3 * i)
        return audio

    assert peak(speech(-20.0), Cue.ADULT_SHOUTING) >= 0.5  # 40 dB over the room
    assert peak(speech(-52.0), Cue.ADULT_SHOUTING) == 0.0  # 8 dB over it: a voice across the room
    cry = child_cry(np.random.default_rng(4), 5.0)
    cry = cry / np.sqrt(np.mean(cry**2)) * 10 ** (-20 / 20)
    assert peak(place(room(8), cry, 2.0), Cue.ADULT_SHOUTING) < 0.5


def test_a_blow_is_heard_and_a_far_knock_a_sound_that_goes_on_or_a_syllable_is_not() -> None:
    assert peak(place(room(6), burst(0.3, -15.0, 0.03), 3.0), Cue.IMPACTS) == 1.0
    assert peak(place(room(6), burst(0.3, -50.0, 0.03), 3.0), Cue.IMPACTS) == 0.0  # 10 dB over the room
    assert peak(place(room(6), burst(2.0, -15.0, None), 3.0), Cue.IMPACTS) == 0.0  # a vacuum cleaner starting
    syllable = np.concatenate([burst(0.04, -15.0, None), voice(200.0, 0.3, -15.0)])  # "ta"
    assert peak(place(room(6), syllable, 3.0), Cue.IMPACTS) == 0.0
    # Over a crying child it still lands, and a cry's own breaths are not blows.
    cry = child_cry(np.random.default_rng(5), 6.0)
    cry = (cry / np.sqrt(np.mean(cry**2)) * 10 ** (-25 / 20)).astype(np.float32)
    crying = place(room(8), cry, 1.0)
    assert peak(crying, Cue.IMPACTS) < 0.3
    assert peak(place(crying, burst(0.3, -12.0, 0.03), 4.2), Cue.IMPACTS) >= 0.3  # weaker: the cry masks part of it


def test_windows_fed_from_a_ring_hear_what_the_whole_stream_does_and_a_gap_starts_afresh() -> None:
    audio = place(place(room(12), child_cry(np.random.default_rng(6), 6.0) * 0.05, 1.0), burst(0.3, -15.0, 0.03), 6.0)
    whole = window_levels(audio)
    ring, cues, fed = RingBuffer(40.0, SR), AcousticCues(), []
    for end in np.arange(2.0, 12.0 + 1e-9, 0.5):
        ring.append(audio[ring.total_samples : int(end * SR)])
        clip = ring.snapshot(2.5, float(end))
        fed.append(cues.levels(float(end), clip.samples, clip.start_s))
    assert np.allclose([list(w.values()) for w in fed], [list(w.values()) for w in whole])
    # Windows lost in between (the audio since the last one no longer given): the cues start
    # afresh from the audio there is, as a new stream's would.
    later = audio[2 * SR : 6 * SR]  # crying, then the blow
    after_gap = [cues.levels(end, later, 18.0) for end in (20.0, 20.5, 21.0)]
    fresh = AcousticCues()
    new = [fresh.levels(end, later, 18.0) for end in (20.0, 20.5, 21.0)]
    assert [w[Cue.CRYING] for w in after_gap] == [w[Cue.CRYING] for w in new]
    assert [w[Cue.IMPACTS] for w in after_gap] == [w[Cue.IMPACTS] for w in new]
    assert max(w[Cue.CRYING] for w in after_gap) > 0.5


def crying_shouting_blows() -> np.ndarray:
    """14 s: a child crying from 1 s, an adult shouting over it (syllables at 230 Hz) from 3 s,
    blows at 6, 7.5 and 9 s."""
    cry = child_cry(np.random.default_rng(7), 10.0)
    audio = place(room(14), (cry / np.sqrt(np.mean(cry**2)) * 10 ** (-24 / 20)).astype(np.float32), 1.0)
    for i in range(8):
        audio = place(audio, voice(230.0, 0.2, -14.0, glide=-0.1, seed=i), 3.0 + 0.3 * i)
    for at in (6.0, 7.5, 9.0):
        audio = place(audio, burst(0.3, -10.0, 0.03, seed=int(at)), at)
    return audio


def test_a_daycare_session_raises_on_the_sound_alone() -> None:
    audio = crying_shouting_blows()
    ring = RingBuffer(40.0, SR)
    listening = SessionProfile(DeviceProfile.DAYCARE, DaycarePolicy(), 0.5, ring)
    raised = []
    for end in np.arange(2.0, 14.0 + 1e-9, 0.5):
        ring.append(audio[ring.total_samples : int(end * SR)])
        raised += listening.heard(float(end), ())  # no tags: inference down, or tags that miss it
    (event,) = raised
    assert event.kind is IncidentKind.CHILD_SAFETY and event.emergency_class.key == "crime"
    # A home device hearing the same raises nothing.
    home = SessionProfile(DeviceProfile.HOME, DaycarePolicy(), 0.5, ring)
    assert home.heard(14.0, ()) == []


def test_a_daycare_device_streaming_it_through_a_live_session_gets_a_child_safety_detection(tmp_path: Path) -> None:
    # A model that hears every window as normal and sends no tags: the sound's cues alone, read
    # from the session's own ring buffer, must raise it.
    model = FakeClassifier()
    model.deaf = True
    harness = make_harness(tmp_path, model)
    with harness.client:
        harness.client.portal.call(every_device_a_daycare, harness)  # type: ignore[union-attr]
        with session(harness.client) as ws:
            send_audio(ws, pcm16(crying_shouting_blows()))
            detection = receive_until(ws, is_type("detection"))[-1]
            assert detection["kind"] == "child_safety" and detection["class"] == "crime"
            assert 6.0 <= detection["stream_time_s"] <= 14.0  # once the blows come
            ws.send_json({"type": "cancel", "incident_id": detection["incident_id"], "kind": "handled"})
            receive_until(ws, is_type("incident", state="cancelled"))


async def every_device_a_daycare(harness: Harness) -> None:
    async with harness.db.session() as s:
        await s.execute(update(Device).values(profile=DeviceProfile.DAYCARE))
