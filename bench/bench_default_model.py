"""Windows per second of the embedded default model beside EfficientAT mn04 on this CPU.

    .venv/bin/python bench/bench_default_model.py [--threads 1] [--manifest DATA/manifest.csv]

Times ``Classifier.predict`` (what the inference service runs) at batch 1 and 32 on random
windows of each model's own spec. With ``--manifest`` (a CSV of ``file``, ``class_id`` and
optionally ``split``; only ``split == val`` rows are kept when the column exists) it also runs
``hearo eval``'s evaluation for both models and prints their figures side by side: each model's
own thresholds (mn04 zero-shot: the gateway default 0.5) and, with ``--tune-manifest`` (rows of
``split == train`` when the column exists), mn04 again with thresholds chosen on those clips by
``hearo thresholds``' rule, so that its zero-shot figure is not held to a threshold made for
another kind of score.

    .venv/bin/python bench/bench_default_model.py --threads 2 \
        --manifest var/dataset/manifest.csv --tune-manifest var/dataset/manifest.csv
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch

from hearo.evaluate import evaluate, tune_thresholds
from services.inference.registry import default_registry
from services.inference.settings import InferenceSettings


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
    out = folder / f"{split}.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class_id"])
        writer.writerows([(str((manifest.parent / r["file"]).resolve()), r["class_id"]) for r in keep])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--tune-manifest", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}")
    for name in ("default", "efficientat"):
        for batch in (1, 32):
            print(f"{name:12s} batch {batch:2d}: {windows_per_second(name, batch):8.1f} windows/s")
    if args.manifest:
        with tempfile.TemporaryDirectory() as tmp:
            val = split_manifest(args.manifest, Path(tmp), "val")
            runs: list[tuple[str, str, dict[str, float] | None]] = [
                ("default", "default", None), ("efficientat", "mn04 0.5", None),
            ]
            if args.tune_manifest:
                tuned = tune_thresholds(split_manifest(args.tune_manifest, Path(tmp), "train"), "efficientat")
                print(f"mn04 thresholds tuned on {args.tune_manifest} (train rows): {tuned}")
                runs.append(("efficientat", "mn04 tuned", tuned))
            for model, label, thresholds in runs:
                for patterns in (True, False):
                    m = evaluate(val, model, json_out=Path(tmp) / "report.json", alarm_patterns=patterns,
                                 thresholds=thresholds).metrics
                    print(f"{label:12s} {'with' if patterns else 'without'} patterns: macro-F1 {m['macro_f1']:.3f}  "
                          f"emergency recall {m['emergency_recall']:.3f}  false alarms {m['false_alarm_rate']:.3f}  "
                          f"({m['clips']} clips)")


if __name__ == "__main__":
    main()
