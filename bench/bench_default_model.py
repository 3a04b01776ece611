"""Windows per second of the embedded default model beside the previous one (``small_cnn``) and
EfficientAT mn04 zero-shot on this CPU, and their detection figures side by side.

    .venv/bin/python bench/bench_default_model.py [--threads 2] [--manifest DATA/manifest.csv]
        [--tune-manifest DATA/manifest.csv] [--household DIR]

Times ``Classifier.predict`` (what the inference service runs) at batch 1 and 32 on random
windows of each model's own spec, all in one run, and prints the default's speed as a ratio of
the previous default's. With ``--manifest`` (a data build manifest) it runs ``hearo eval`` on
the held-out half of its validation split (``split == val`` rows whose source group is not a
calibration group: what the trainer reports on) for every model, each with its own thresholds
(mn04 zero-shot: the gateway default 0.5) and, with ``--tune-manifest`` (its ``split == train``
rows), mn04 again with thresholds chosen on those clips by ``hearo thresholds``' rule. With
``--household`` it also counts false alarms per hour on household audio (``hearo data household``).

    .venv/bin/python bench/bench_default_model.py --threads 2 --manifest var/dataset/manifest.csv \
        --tune-manifest var/dataset/manifest.csv --household var/household-evaluation
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch

from hearo.evaluate import evaluate, evaluate_household, tune_thresholds
from services.inference.registry import default_registry
from services.inference.settings import InferenceSettings
from services.inference.training.manifest import is_calibration_group, source_group

MODELS = ("default", "small_cnn", "efficientat")


def windows_per_second(name: str, batch: int, seconds: float = 3.0) -> float:
    entry = default_registry().get(name)
    classifier = entry.load(InferenceSettings(), torch.device("cpu"))
    windows = torch.randn(batch, entry.spec.window_frames, entry.spec.n_mels)
    for _ in range(3):
        classifier.predict(windows)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        classifier.predict(windows)
        done += batch
    return done / (time.perf_counter() - start)


def split_manifest(manifest: Path, folder: Path, split: str) -> Path:
    """``manifest``'s rows of ``split`` (all rows without a split column) with absolute paths."""
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r.get("split", split) == split]
    if split == "val":  # the held-out half: the calibration half chose the default's thresholds
        keep = [r for r in keep if not is_calibration_group(source_group(r))]
    out = folder / f"{split}.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class_id"])
        writer.writerows([(str((manifest.parent / r["file"]).resolve()), r["class_id"]) for r in keep])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--tune-manifest", type=Path)
    parser.add_argument("--household", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}")
    speed = {(name, batch): windows_per_second(name, batch) for name in MODELS for batch in (1, 32)}
    for (name, batch), rate in speed.items():
        print(f"{name:12s} batch {batch:2d}: {rate:8.1f} windows/s")
    for batch in (1, 32):
        print(f"default / small_cnn at batch {batch}: {speed[('default', batch)] / speed[('small_cnn', batch)]:.2f}x")
    runs: list[tuple[str, str, dict[str, float] | None]] = [(name, name, None) for name in MODELS]
    with tempfile.TemporaryDirectory() as tmp:
        if args.tune_manifest:
            tuned = tune_thresholds(split_manifest(args.tune_manifest, Path(tmp), "train"), "efficientat")
            print(f"mn04 thresholds tuned on {args.tune_manifest} (train rows): {tuned}")
            runs.append(("efficientat", "mn04 tuned", tuned))
        if args.manifest:
            val = split_manifest(args.manifest, Path(tmp), "val")
            for model, label, thresholds in runs:
                for patterns in (True, False):
                    m = evaluate(val, model, json_out=Path(tmp) / "report.json", alarm_patterns=patterns,
                                 thresholds=thresholds).metrics
                    print(f"{label:12s} {'with' if patterns else 'without'} patterns: macro-F1 {m['macro_f1']:.3f}  "
                          f"emergency recall {m['emergency_recall']:.3f}  false alarms {m['false_alarm_rate']:.3f}  "
                          f"({m['clips']} clips)")
        if args.household:
            for model, label, thresholds in runs:
                h = evaluate_household(args.household, model, thresholds=thresholds)
                print(f"{label:12s} household: {len(h.alarms)} false alarms in {h.hours:.2f} h = {h.per_hour:.2f} per hour; "
                      f"{h.minutes_firing} of {h.minutes} minutes fire")


if __name__ == "__main__":
    main()
