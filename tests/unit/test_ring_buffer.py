from __future__ import annotations

import numpy as np
import pytest

from services.gateway.ring_buffer import RingBuffer

RATE = 100  # small rate: sample n has value n, so positions are easy to check


def ramp(start: int, stop: int) -> np.ndarray:
    return np.arange(start, stop, dtype=np.float32)


def test_holds_everything_until_full() -> None:
    buffer = RingBuffer(seconds=2.0, sample_rate=RATE)
    buffer.append(ramp(0, 50))
    buffer.append(ramp(50, 120))
    clip = buffer.snapshot(10.0)
    assert clip.start_s == 0.0
    np.testing.assert_array_equal(clip.samples, ramp(0, 120))
    assert buffer.end_s == pytest.approx(1.2)


def test_wraps_and_keeps_the_newest_capacity_samples() -> None:
    buffer = RingBuffer(seconds=2.0, sample_rate=RATE)  # 200 samples
    for start in range(0, 1000, 30):
        buffer.append(ramp(start, start + 30))
    assert buffer.total_samples == 1020
    clip = buffer.snapshot(5.0)
    np.testing.assert_array_equal(clip.samples, ramp(820, 1020))
    assert clip.start_s == pytest.approx(8.2)
    assert clip.duration_s == pytest.approx(2.0)


def test_append_longer_than_capacity() -> None:
    buffer = RingBuffer(seconds=1.0, sample_rate=RATE)
    buffer.append(ramp(0, 30))
    buffer.append(ramp(30, 380))
    np.testing.assert_array_equal(buffer.snapshot(1.0).samples, ramp(280, 380))
    buffer.append(ramp(380, 390))
    np.testing.assert_array_equal(buffer.snapshot(1.0).samples, ramp(290, 390))


def test_snapshot_window_before_a_given_time() -> None:
    buffer = RingBuffer(seconds=30.0, sample_rate=RATE)
    buffer.append(ramp(0, 2500))  # 25 s
    clip = buffer.snapshot(seconds_before=10.0, end_s=20.0)
    assert clip.start_s == pytest.approx(10.0)
    np.testing.assert_array_equal(clip.samples, ramp(1000, 2000))
    # Asking past the newest sample gives what exists.
    future = buffer.snapshot(seconds_before=10.0, end_s=30.0)
    assert future.start_s == pytest.approx(20.0)
    np.testing.assert_array_equal(future.samples, ramp(2000, 2500))


def test_snapshot_of_overwritten_audio_is_cut_or_empty() -> None:
    buffer = RingBuffer(seconds=1.0, sample_rate=RATE)
    buffer.append(ramp(0, 500))  # holds 4.0..5.0 s
    partly = buffer.snapshot(seconds_before=2.0, end_s=4.5)
    assert partly.start_s == pytest.approx(4.0)
    np.testing.assert_array_equal(partly.samples, ramp(400, 450))
    assert len(buffer.snapshot(seconds_before=1.0, end_s=2.0).samples) == 0


def test_snapshot_is_a_copy() -> None:
    buffer = RingBuffer(seconds=1.0, sample_rate=RATE)
    buffer.append(ramp(0, 50))
    clip = buffer.snapshot(1.0)
    buffer.append(np.full(200, -1.0, dtype=np.float32))
    np.testing.assert_array_equal(clip.samples, ramp(0, 50))


def test_thirty_seconds_at_16k_is_fixed_memory() -> None:
    buffer = RingBuffer(seconds=40.0, sample_rate=16_000)
    frame = np.ones(1600, dtype=np.float32)
    for _ in range(1000):  # 100 s of 100 ms frames
        buffer.append(frame)
    assert buffer.capacity == 640_000
    assert buffer.snapshot(30.0).duration_s == pytest.approx(30.0)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        RingBuffer(seconds=0, sample_rate=RATE)
    with pytest.raises(ValueError):
        RingBuffer(seconds=1.0, sample_rate=RATE).snapshot(-1.0)


@pytest.mark.parametrize(("seconds", "end_s"), [(0.5, 9.7), (2.0, 10.2), (1.0, 3.0), (5.0, 10.2), (1.0, 12.0)])
def test_mean_square_reads_what_snapshot_cuts_without_copying(seconds: float, end_s: float) -> None:
    buffer = RingBuffer(seconds=2.0, sample_rate=RATE)
    for start in range(0, 1020, 30):  # wrapped several times; ends at 10.2 s
        buffer.append(ramp(start, start + 30) / 1000)
    clip = buffer.snapshot(seconds, end_s=end_s)
    expected = float(np.mean(clip.samples.astype(np.float64) ** 2)) if len(clip.samples) else 0.0
    assert buffer.mean_square(seconds, end_s) == pytest.approx(expected, rel=1e-5)
