"""Away mode on household audio: a learned home, a simulated week, injected unusual events.

    .venv/bin/python bench/bench_anomaly.py [--minutes-per-scene 8] [--events 150] [--seed 0]
                                            [--test-part evaluation|training] [--cues classes,moment,impact]

What it does (docs/anomaly.md, "Evaluation"; the audio side is ``bench/anomaly_household.py``):

1. **Pools of real windows.** Household scenes (``hearo.data.household``'s eight kinds, plus a
   quiet room: the home's one room tone) are composed from the data build's allow-listed
   sources, once from the *training* side of the split (the learning pool) and once from
   ``--test-part`` (the test pool: the *evaluation* side, other sources, or the *training* side
   again, the same home's sources in other compositions), and streamed as a session would be:
   the gateway's ``AudioPipeline`` and the default model's nine class scores for every window.
2. **Days composed** from those windows with a daily rhythm (a quiet night, the alarm clock and
   the kitchen in the morning, a quiet day with the street outside, cooking and children in the
   late afternoon, television and talk in the evening, visitors on some days), each block
   filled with runs of consecutive windows of its scene's files.
3. **Learning** (``--days``, 3): the learning days go to a SQLite database as the gateway stores
   them (a pair of windows every ``sample_every_s``) and the worker's own ``AnomalyKeeper``
   trains the device's model (budget 1 a week).
4. **A week of ordinary days** (``--week-days``, 7) from the test pool is judged by the
   session's scorer (``AnomalyScorer``, away mode, the 300 s refractory): every alarm is a
   false anomaly.
5. **Injected events** (``--events``): breaking glass, a door forced (slams and banging, and
   synthesised knocking) and a fall (impacts), from the sides of the split the default model
   was not trained on, mixed at -24 to -12 dBFS into 20 s of test-pool audio of a scene drawn
   from the daily rhythm, streamed and judged the same way: detected when an alarm comes within
   10 s of the event's start.
6. **Inactivity**: the last sound of activity at 08:00, then hours of the quiet test-pool room:
   ``ActivityFloor`` must not find activity in it, and the worker's rule (``inactivity_due``)
   with its write and check periods flags the spell; the delay past the span is the figure.

Use one seed to choose parameters and report another (the docs' figures: seed 0; tuning: 1).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly_household import (  # noqa: E402
    CACHE, HOP_S, ONSET_S, QUIET, Heard, background, build_pool, cached, compose_days, hours_a_week, injected_events,
)
from hearo.data.build import BuildConfig, BuildSummary, collect_sources, split_groups  # noqa: E402
from services.inference.registry import default_registry  # noqa: E402
from services.inference.settings import InferenceSettings  # noqa: E402
from shared.anomaly import CUES, ActivityFloor, AnomalyPolicy, AnomalyScorer  # noqa: E402
from shared.anomaly.inactivity import inactivity_due  # noqa: E402
from shared.device_modes import ListeningMode  # noqa: E402


async def train_through_the_worker(learning: np.ndarray, policy: AnomalyPolicy) -> tuple[AnomalyScorer, int]:
    from services.alerting.anomaly_training import AnomalyKeeper
    from shared.anomaly.store import active_models, record_samples
    from shared.db import Database, upgrade_database
    from shared.db.anomaly_tables import AnomalyActivity
    from shared.db.models import Device
    from sqlalchemy import update

    url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/anomaly.db"
    await asyncio.to_thread(upgrade_database, url)
    db = Database(url)
    try:
        async with db.session() as session:
            device = Device(token_hash=uuid.uuid4().hex * 2, owner_name="bench", birth_year=1950, consent_recording=True,
                            consent_location=False, consent_share_profile=False)  # fmt: skip
            session.add(device)
        every = int(policy.sample_every_s / HOP_S)
        pairs = np.stack([learning[every - 1::every][: len(learning[every::every])], learning[every::every]], axis=1)
        start = datetime.now(UTC) - timedelta(days=4)
        for i in range(0, len(pairs), 30):  # one batch per flush (5 min of 10 s samples)
            await record_samples(db, device.id, pairs[i: i + 30].tolist(), start, start, policy.max_samples)
        async with db.session() as session:
            await session.execute(update(AnomalyActivity).values(learning_since=start))
        trained, _ = await AnomalyKeeper(db, policy, actor="bench").run_once()
        model = (await active_models(db, [device.id]))[device.id].model
        print(f"  trained v{trained} on {len(pairs)} pairs; thresholds " + ", ".join(
            f"{cue} {c.threshold:.2f} (highest learning {c.highest:.2f})"
            for cue, c in zip(CUES, model.calibrations)))  # fmt: skip
        return AnomalyScorer(ListeningMode.AWAY, model, policy.refractory_s), len(pairs)
    finally:
        await db.dispose()


def inactivity_delay(quiet: list[Heard], policy: AnomalyPolicy, rng: np.random.Generator) -> tuple[float, int]:
    """Seconds past the span at which the worker flags the spell, and activity windows found in the quiet."""
    levels = np.concatenate([f.levels for f in quiet])
    floor, found = ActivityFloor(), 0
    floor.heard(-30.0)  # the last activity
    for level in np.resize(levels, 4 * 3600 * 2):  # four hours of the quiet room
        found += floor.heard(float(level))
    span = 12 * 3600.0
    delays = []
    for _ in range(200):
        last = datetime(2026, 12, 1, 8, 0, tzinfo=UTC) + timedelta(seconds=float(rng.uniform(0, 60)))
        written = last + timedelta(seconds=float(rng.uniform(0, policy.activity_write_s)))  # the next write
        check = last + timedelta(seconds=float(rng.uniform(0, policy.check_every_s)))
        while not inactivity_due(check, written, span, None, policy):
            check += timedelta(seconds=policy.check_every_s)
        delays.append((check - last).total_seconds() - span)
    return float(np.max(delays)), found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--week-days", type=int, default=7)
    parser.add_argument("--events", type=int, default=150)
    parser.add_argument("--minutes-per-scene", type=float, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-part", choices=("evaluation", "training"), default="evaluation",
                        help="the test week's sources: the evaluation side (other sources than the learning days), "
                        "or the training side again (the same home's sources in other compositions)")
    parser.add_argument("--cues", help="the cues that judge, comma-separated (default: the policy's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = AnomalyPolicy(timezone="UTC", **({"cues": tuple(args.cues.split(","))} if args.cues else {}))
    config = BuildConfig()
    with Progress(transient=True) as progress:
        sources = collect_sources(config, Path.home() / ".cache/hearo/data-cache", progress,
                                  BuildSummary(manifest=CACHE / "unused.csv"))  # fmt: skip
    validation = split_groups(sources, config.val_fraction, config.seed)
    classifier = default_registry().get("default").load(InferenceSettings(), torch.device("cpu"))
    minutes, seed = args.minutes_per_scene, args.seed

    def pool(part: str, compositions: int) -> dict[str, list[Heard]]:
        return cached(f"pool-{part}-{minutes:g}-{compositions}-house{seed}", lambda: build_pool(
            background(sources, validation, part, seed), minutes, compositions, seed, classifier))  # fmt: skip

    learn_pool, test_pool = pool("training", seed), pool(args.test_part, seed + 1)
    events = cached(f"events-{args.test_part}-{args.events}-{seed}-house{seed}", lambda: injected_events(
        sources, validation, args.test_part, args.events, seed, seed, classifier))  # fmt: skip
    rng = np.random.default_rng(seed)
    vectors = lambda p: {scene: [f.vectors() for f in files] for scene, files in p.items()}  # noqa: E731
    learning = compose_days(vectors(learn_pool), args.days, rng)
    scorer, pairs = asyncio.run(train_through_the_worker(learning, policy))

    week = compose_days(vectors(test_pool), args.week_days, rng)
    started, false_alarms = time.perf_counter(), Counter[str]()
    for i, features in enumerate(week):
        scored = scorer.judge(features, i * HOP_S)
        if scored is not None:
            false_alarms[scored.cue] += 1
    per_window_us = (time.perf_counter() - started) / len(week) * 1e6
    per_week = sum(false_alarms.values()) / args.week_days * 7
    # The composed week draws its 1.2 M windows from the test pool's few hours, so one odd moment
    # of the pool recurs in it a hundred times. Each file of the pool heard once, weighted by the
    # hours the rhythm gives its scene, estimates a week of audio that never repeats.
    distinct = 0.0
    for scene, files in test_pool.items():
        once = AnomalyScorer(ListeningMode.AWAY, scorer.model, policy.refractory_s)
        alarms = sum(once.judge(v, i * HOP_S + 1000.0 * k) is not None
                     for k, f in enumerate(files) for i, v in enumerate(f.vectors()))  # fmt: skip
        heard_h = sum(len(f.levels) for f in files) * HOP_S / 3600
        distinct += alarms / heard_h * hours_a_week(scene)

    detected: dict[str, list[bool]] = {"glass": [], "door": [], "fall": []}
    cues = Counter[str]()
    for event in events:
        judge = AnomalyScorer(ListeningMode.AWAY, scorer.model, policy.refractory_s)
        hit = None
        for i, features in enumerate(event.heard.vectors()):
            t = (i + 1) * HOP_S + 1.5  # the window's end (the first ends at 2 s)
            scored = judge.judge(features, t)
            if scored is not None and ONSET_S <= t <= ONSET_S + 10.0:
                hit = scored.cue
        detected[event.kind].append(hit is not None)
        detected.setdefault("in a quiet home" if event.scene == QUIET else "over household sound", []).append(
            hit is not None)
        cues[hit or "missed"] += 1

    delay, found = inactivity_delay(test_pool[QUIET], policy, rng)
    flagged = [hit for kind in ("glass", "door", "fall") for hit in detected[kind]]
    print()
    print(f"test sources: the {args.test_part} side of the split; {minutes:g} minutes a scene; seed {seed}; "
          f"cues {', '.join(policy.cues)}")  # fmt: skip
    print(f"learning: {args.days} days composed ({pairs} stored pairs); test week: {args.week_days} days "
          f"({len(week)} windows, scored in {per_window_us:.1f} µs a window)")  # fmt: skip
    print(f"false anomalies: {sum(false_alarms.values())} in {args.week_days} days = {per_week:.2f} per week "
          f"(target <= 1); by cue {dict(false_alarms)}; the test pool heard once, at the rhythm's "
          f"hours: {distinct:.1f} per week")  # fmt: skip
    print(f"unusual events flagged within 10 s: {np.mean(flagged) * 100:.1f} % of {len(flagged)} (target >= 90 %); "
          f"by cue {dict(cues)}")  # fmt: skip
    for kind, hits in detected.items():
        print(f"  {kind}: {np.mean(hits) * 100:.1f} % of {len(hits)}")
    print(f"inactivity (12 h span, writes every {policy.activity_write_s:g} s, checks every "
          f"{policy.check_every_s:g} s): flagged at most {delay:.0f} s after the span (target <= 300 s); "
          f"activity found in 4 h of the quiet room: {found} windows")  # fmt: skip


if __name__ == "__main__":
    main()
