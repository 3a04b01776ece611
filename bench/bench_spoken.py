"""Spoken evidence cost: recogniser CPU per stream-hour of household audio, and the gate's pass rate.

Streams household audio (``hearo data household``, all eight scenes, so speech takes the share
it takes in those homes) through ``SpokenListener`` in 200 ms frames as a session does, and
prints the gate's and the recognisers' CPU time (thread time) per hour of stream and as a share
of one core, with the gate's pass rate. ``HEARO_SPOKEN_RECOGNISER=vosk`` measures the Vosk and
PocketSphinx recognisers (the speech extra) instead of the keyword network.

    .venv/bin/python bench/bench_spoken.py --household ~/.cache/hearo/household-evaluation --minutes 60
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import soundfile as sf

from shared.spoken import SpokenListener, parse_languages, recogniser_for
from shared.spoken.recognisers import recogniser_kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--household", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--languages", default="ko,en")
    args = parser.parse_args()
    languages = parse_languages(args.languages)
    for language in languages:
        recogniser_for(language)  # load once, outside the figures
    files = sorted(args.household.glob("*.wav"))
    by_scene: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_scene[path.stem.rsplit("-", 1)[0]].append(path)
    # Round-robin over the scenes until the minutes are in hand.
    order = [p for group in zip(*[iter(v) for v in by_scene.values()]) for p in group] or files
    total_s = total_cpu = total_recog = passed = 0.0
    per_scene: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for path in order:
        if total_s >= args.minutes * 60:
            break
        audio, rate = sf.read(str(path), dtype="float32")
        audio = audio[: int((args.minutes * 60 - total_s) * rate)]
        listener = SpokenListener(languages)
        started = time.thread_time()
        for lo in range(0, audio.size, rate // 5):
            listener.feed(audio[lo: lo + rate // 5])
        listener.flush()
        cpu = time.thread_time() - started
        seconds = audio.size / rate
        total_s += seconds
        total_cpu += cpu
        total_recog += listener.cpu_s
        passed += listener.gate.passed_s
        scene = per_scene[path.stem.rsplit("-", 1)[0]]
        scene[0] += seconds
        scene[1] += listener.gate.passed_s
        scene[2] += cpu
    hours = total_s / 3600
    print(f"{total_s / 60:.1f} min of household audio, languages {','.join(languages)}, recogniser {recogniser_kind()}")
    print(f"gate pass rate: {passed / total_s:.3f} of the stream goes to the recognisers")
    print(f"recognisers: {total_recog / hours:.0f} CPU-s per stream-hour = {100 * total_recog / total_s:.2f} % of one core")
    print(f"gate + recognisers: {total_cpu / hours:.0f} CPU-s per stream-hour = {100 * total_cpu / total_s:.2f} % of one core")
    for name, (seconds, gated, cpu) in sorted(per_scene.items()):
        print(f"  {name:14s} {seconds / 60:5.1f} min  pass {gated / seconds:.3f}  {100 * cpu / seconds:.2f} % of a core")


if __name__ == "__main__":
    main()
