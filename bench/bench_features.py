"""CPU cost of features per stream-second: incremental vs recomputing every window.

For each feature spec, one simulated live stream of noise is fed two ways:
- incremental: ``LogMelStream`` + ``WindowStream`` with small pushes (20 ms like a live client,
  plus 100 ms and 500 ms for comparison); each frame is computed once, as soon as it completes;
- ``LiveWindows`` (the gateway's path) with 20 ms and 100 ms pushes (the protocol's bounds): the
  same frames and windows, but the frames of a hop are computed together when the window's last
  sample arrives; also as stream-seconds per core-second;
- recompute: at every 0.5 s hop, the whole 2 s window is computed from the raw audio with the
  batch function (``beats_fbank`` / ``efficientat_logmel``, the torch reference), so each frame is
  computed four times; for ``efficientat_mel`` also with the live path's own arithmetic
  (``logmel_frames``), which bounds what incremental computing alone saves (at most 4 times).

Figures are milliseconds of CPU time (``time.process_time``) per second of audio for one stream,
best of a few rounds, with torch and the BLAS limited to one thread as the gateway runs them
(``shared/numeric_threads.py``: the gateway serves many streams; these ops are far too small for
helper threads, which only add wake-ups and spinning); ``LiveWindows`` at 20 ms pushes is also
timed with OpenBLAS's default of a thread per core, beside it. Also
prints the batch functions' throughput. Prints figures only; no pass/fail.

Run: ``.venv/bin/python bench/bench_features.py [--seconds 30] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from shared.features.efficientat_mel import CENTRE_PAD, efficientat_logmel, logmel_frames, preemphasis
from shared.features.kaldi_fbank import beats_fbank
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL, FeatureSpec
from shared.features.stream import LiveWindows, LogMelStream, WindowStream
from shared.numeric_threads import single_threaded_numerics

HOP_SECONDS = 0.5
WINDOW_SECONDS = 2.0


def _batch_function(spec: FeatureSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    return beats_fbank if spec is BEATS_FBANK else efficientat_logmel


def _best_cpu_ms(run: Callable[[], int], rounds: int) -> tuple[float, int]:
    """Best CPU time of ``rounds`` runs in ms, and the number of windows the run produced."""
    best, windows = float("inf"), 0
    for _ in range(rounds):
        start = time.process_time()
        windows = run()
        best = min(best, (time.process_time() - start) * 1e3)
    return best, windows


def _incremental(spec: FeatureSpec, audio: np.ndarray, chunk_seconds: float) -> Callable[[], int]:
    chunk = round(chunk_seconds * spec.sample_rate)
    chunks = [audio[i : i + chunk] for i in range(0, len(audio), chunk)]
    hop_frames = spec.frames_for(HOP_SECONDS)

    def run() -> int:
        features, windows = LogMelStream(spec), WindowStream(spec, hop_frames)
        count = 0
        for samples in chunks:
            count += len(windows.push(features.push(samples)))
        return count

    return run


def _live_windows(spec: FeatureSpec, audio: np.ndarray, chunk_seconds: float) -> Callable[[], int]:
    chunk = round(chunk_seconds * spec.sample_rate)
    chunks = [audio[i : i + chunk] for i in range(0, len(audio), chunk)]
    hop_frames = spec.frames_for(HOP_SECONDS)

    def run() -> int:
        windows = LiveWindows(spec, hop_frames)
        return sum(len(windows.push(samples)) for samples in chunks)

    return run


def _recompute(spec: FeatureSpec, audio: np.ndarray, compute: Callable[[torch.Tensor], object]) -> Callable[[], int]:
    """Every 0.5 s hop, ``compute`` of the whole 2 s window ending there (1-D samples)."""
    window = round(WINDOW_SECONDS * spec.sample_rate)
    hop = round(HOP_SECONDS * spec.sample_rate)
    waveform = torch.from_numpy(audio)

    def run() -> int:
        count = 0
        for end in range(window, len(audio) + 1, hop):
            compute(waveform[end - window : end])
            count += 1
        return count

    return run


def _reference(spec: FeatureSpec) -> Callable[[torch.Tensor], object]:
    """The batch function (the torch reference) on one window."""
    batch = _batch_function(spec)
    return lambda window: batch(window.unsqueeze(0))


def _live_arithmetic(window: torch.Tensor) -> object:
    """EfficientAT's window with the live path's own ``logmel_frames``."""
    return logmel_frames(np.pad(preemphasis(window).numpy(), CENTRE_PAD, mode="reflect"))


def _batch_throughput(spec: FeatureSpec, rounds: int) -> float:
    """ms of CPU per 2 s clip when computing a batch of 32 clips at once."""
    compute = _batch_function(spec)
    clips = torch.randn(32, round(WINDOW_SECONDS * spec.sample_rate)) * 0.1
    compute(clips)
    best, _ = _best_cpu_ms(lambda: compute(clips).shape[0], rounds)
    return best / clips.shape[0]


def _label(method: float | str) -> str:
    return f"LogMelStream+WindowStream {method * 1e3:g} ms" if isinstance(method, float) else method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated stream length")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; the best is kept")
    args = parser.parse_args()
    single_threaded_numerics()  # as the gateway runs them (shared/numeric_threads.py)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, 1 thread (torch and BLAS), {args.seconds:g} s stream, best of {args.rounds}")
    print(f"{'spec':16s} {'method':26s} {'ms CPU / stream-s':>18s} {'windows':>8s}")
    for spec in (BEATS_FBANK, EFFICIENTAT_MEL):
        audio = (0.1 * rng.standard_normal(round(args.seconds * spec.sample_rate))).astype(np.float32)
        # Warm up caches (window, mel bank, FFT plans) outside the timings.
        _incremental(spec, audio[: spec.sample_rate * 3], 0.02)()
        _recompute(spec, audio[: spec.sample_rate * 3], _reference(spec))()
        recompute_ms, recompute_windows = _best_cpu_ms(_recompute(spec, audio, _reference(spec)), args.rounds)
        per_second: dict[float | str, float] = {}
        for chunk_seconds in (0.02, 0.1, 0.5):
            ms, windows = _best_cpu_ms(_incremental(spec, audio, chunk_seconds), args.rounds)
            per_second[chunk_seconds] = ms / args.seconds
            label = f"incremental, {chunk_seconds * 1e3:g} ms pushes"
            print(f"{spec.name:16s} {label:26s} {per_second[chunk_seconds]:18.2f} {windows:8d}")
        for chunk_seconds in (0.02, 0.1):
            label = f"LiveWindows, {chunk_seconds * 1e3:g} ms pushes"
            ms, windows = _best_cpu_ms(_live_windows(spec, audio, chunk_seconds), args.rounds)
            per_second[label] = ms / args.seconds
            rate = 1e3 / per_second[label]
            print(f"{spec.name:16s} {label:26s} {per_second[label]:18.2f} {windows:8d}  ({rate:,.0f} stream-s per core-s)")
        with threadpool_limits(limits=os.cpu_count(), user_api="blas"):
            ms, windows = _best_cpu_ms(_live_windows(spec, audio, 0.02), args.rounds)
        label = f"LiveWindows, 20 ms, BLAS x{os.cpu_count()}"
        print(f"{spec.name:16s} {label:26s} {ms / args.seconds:18.2f} {windows:8d}  (not the gateway's setting)")
        recompute_per_second = recompute_ms / args.seconds
        print(f"{spec.name:16s} {'recompute 2 s every 0.5 s':26s} {recompute_per_second:18.2f} {recompute_windows:8d}")
        print(
            f"{spec.name:16s} ratio recompute / incremental: "
            + ", ".join(f"{recompute_per_second / ms:.2f} ({_label(c)})" for c, ms in per_second.items())
        )
        if spec is EFFICIENTAT_MEL:
            same_ms, same_windows = _best_cpu_ms(_recompute(spec, audio, _live_arithmetic), args.rounds)
            same_per_second = same_ms / args.seconds
            label = "recompute, logmel_frames"
            print(f"{spec.name:16s} {label:26s} {same_per_second:18.2f} {same_windows:8d}")
            print(
                f"{spec.name:16s} ratio recompute (logmel_frames) / LiveWindows: "
                + ", ".join(f"{same_per_second / per_second[c]:.2f} ({c})" for c in per_second if isinstance(c, str))
            )
        print(f"{spec.name:16s} batch of 32 x 2 s clips: {_batch_throughput(spec, args.rounds):.2f} ms CPU per clip")


if __name__ == "__main__":
    main()
