"""Away mode on household audio: a learned home, a simulated week, injected unusual events.

    .venv/bin/python bench/bench_anomaly.py [--days 3] [--week-days 7] [--events 60]

What it does (docs/anomaly.md, "Evaluation"):

1. **Pools of real windows.** Household scenes (``hearo.data.household``'s eight kinds, plus a
   quiet room: its room tone alone) are composed from the data build's allow-listed sources,
   once from the *training* side of the split (the learning pool) and once from the
   *evaluation* side (the test pool: other compositions, other sources), and streamed through
   the gateway's own ``AudioPipeline`` (the served model's log-mel spec, 2 s windows every
   0.5 s) into :func:`shared.anomaly.window_features`. Cached under ``~/.cache/hearo/anomaly/``.
2. **Days composed at the feature level** from those windows with a daily rhythm: a quiet night,
   the alarm clock and the kitchen in the morning, a quiet day with the street outside,
   cooking and children in the late afternoon, television and talk in the evening, and on
   some days visitors (doorbell, a party). Each block is filled with runs of consecutive
   windows of its scene's files, so the windows a run holds are real consecutive audio.
3. **Learning** (``--days``, 3): the learning days go to a SQLite database as the gateway stores
   them (a pair of windows every ``sample_every_s``, ``shared.anomaly.store.record_samples``) and
   the worker's own ``AnomalyKeeper`` trains the device's model (budget 1 a week).
4. **A week of ordinary days** (``--week-days``, 7) from the test pool is judged by the
   session's scorer (``AnomalyScorer``, away mode, the 300 s refractory): every alarm is a false
   anomaly.
5. **Injected events** (``--events``): breaking glass (synthesised, and the allow-listed glass
   sources), a door forced (the door slams and banging labelled ``trapped``, synthesised
   knocking) and a fall (the impacts labelled ``accident``), mixed at -24 to -12 dBFS into 20 s of
   test-pool audio of a scene drawn from the daily rhythm, streamed through the same pipeline and
   scorer: detected when an alarm comes within 10 s of the event's start.
6. **Inactivity**: the last sound of activity at 08:00, then hours of the quiet test-pool room
   (the device streams silence): ``ActivityFloor`` must not find activity in it, and the
   worker's rule (``inactivity_due``) with its write and check periods flags the spell; the
   delay past the span is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hearo.data.build import BuildConfig, BuildSummary, Source, collect_sources, split_groups  # noqa: E402
from hearo.data.household import SCENES, _at_level, _compose, _part, _pools  # noqa: E402
from hearo.data.labels import BACKGROUND, NEGATIVE  # noqa: E402
from hearo.data.synth import glass_break, knocking  # noqa: E402
from services.gateway.audio import AudioPipeline, Window  # noqa: E402
from shared.anomaly import ActivityFloor, AnomalyPolicy, AnomalyScorer, window_features  # noqa: E402
from shared.anomaly.inactivity import inactivity_due  # noqa: E402
from shared.device_modes import ListeningMode  # noqa: E402
from shared.features.spec import EFFICIENTAT_MEL  # noqa: E402

SR = 16_000
HOP_S = 0.5
DAY_WINDOWS = int(86400 / HOP_S)
CACHE = Path.home() / ".cache" / "hearo" / "anomaly"
QUIET = "quiet"
# The daily rhythm: (from hour, scenes to draw from) in order; a block lasts until the next.
RHYTHM = [
    (0, [QUIET]), (7, ["alarm_morning"]), (7.5, ["kitchen", "conversation"]), (9, [QUIET, QUIET, "street"]),
    (12, ["kitchen", "conversation"]), (13, [QUIET, "street"]), (17, ["kitchen", "children"]),
    (19, ["tv_radio", "tv_radio", "conversation"]), (22.5, [QUIET]),
]
VISITORS = ["doorbell", "party", "conversation"]  # an evening with visitors, some days


def windows_of(audio: np.ndarray) -> list[Window]:
    """The gateway's windows of ``audio`` (16 kHz float), as a live session makes them."""
    pipeline = AudioPipeline(SR, 1, EFFICIENTAT_MEL, EFFICIENTAT_MEL.frames_for(HOP_S), 30.0)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    heard = []
    step = SR // 10 * 2  # 100 ms frames
    for i in range(0, len(pcm), step):
        heard += pipeline.hear(pcm[i: i + step])
    return [w for w in heard if isinstance(w, Window)]


def features_of(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window features [N, D] and the windows' levels [N]."""
    wins = windows_of(audio)
    return (np.stack([window_features(w.features.numpy(), w.level_dbfs) for w in wins]),
            np.array([w.level_dbfs for w in wins]))  # fmt: skip


def build_pool(part: str, sources: list[Source], validation: set[str], minutes_per_scene: float,
               seed: int, home_seed: int) -> dict[str, list[np.ndarray]]:  # fmt: skip
    mine = [s for s in sources if s.label in (BACKGROUND, NEGATIVE) and _part(s, validation) == part]
    pools = _pools(mine)
    pool: dict[str, list[np.ndarray]] = {}
    # A home has one quiet room: its room tone at one level, not a new one every minute.
    home = np.random.default_rng([home_seed, 7])
    tone, tone_db = pools.pick("ambience", home, set()), float(home.uniform(-62, -52))
    for k, scene in enumerate((*SCENES, QUIET)):
        files = []
        for j in range(int(minutes_per_scene)):
            rng = np.random.default_rng([seed, k, j])
            if scene == QUIET:  # the room tone alone, sometimes a distant event
                start = int(rng.integers(0, max(1, tone.size - 60 * SR)))
                audio = _at_level(np.resize(tone[start:], 60 * SR), tone_db + rng.uniform(-1, 1)).astype(np.float32)
            else:
                audio, _ = _compose(scene, 60.0, pools, rng)
            files.append(features_of(audio)[0])
        pool[scene] = files
        print(f"  {part}: {scene} {len(files)} min", flush=True)
    return pool


def compose_days(pool: dict[str, list[np.ndarray]], days: int, rng: np.random.Generator) -> np.ndarray:
    """``days`` of window features [days * DAY_WINDOWS, D] with the daily rhythm."""
    out = []
    for _ in range(days):
        visitors = rng.random() < 0.4
        for b, (start_h, scenes) in enumerate(RHYTHM):
            end_h = RHYTHM[b + 1][0] if b + 1 < len(RHYTHM) else 24
            if visitors and start_h == 19:
                scenes = VISITORS
            need = int((end_h - start_h) * 3600 / HOP_S)
            while need > 0:
                files = pool[scenes[int(rng.integers(len(scenes)))]]
                f = files[int(rng.integers(len(files)))]
                start = int(rng.integers(0, max(1, len(f) - 20)))
                run = f[start: start + need]
                out.append(run)
                need -= len(run)
    return np.concatenate(out)


def unusual_events(sources: list[Source], rng: np.random.Generator, n: int) -> list[tuple[str, np.ndarray]]:
    glass = [s for s in sources if "glass" in s.path.lower() or "crash" in s.path.lower()]
    doors = [s for s in sources if s.label == "trapped" and s.recipe == "real"]
    falls = [s for s in sources if s.label == "accident" and s.recipe == "real"]
    print(f"  event sources: glass {len(glass)}, door {len(doors)}, fall {len(falls)}")
    out = []
    for i in range(n):
        kind = ("glass", "door", "fall")[i % 3]
        if kind == "glass":
            audio = glass_break(rng) if rng.random() < 0.5 or not glass else glass[int(rng.integers(len(glass)))].audio
        elif kind == "door":
            audio = knocking(rng) if rng.random() < 0.3 or not doors else doors[int(rng.integers(len(doors)))].audio
        else:
            audio = falls[int(rng.integers(len(falls)))].audio
        out.append((kind, np.asarray(audio, dtype=np.float64)[: 6 * SR]))
    return out


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
        active = (await active_models(db, [device.id]))[device.id]
        print(f"  trained v{trained} on {len(pairs)} pairs; threshold {active.model.threshold:.2f} "
              f"(highest learning score {active.model.calibration.highest:.2f})")  # fmt: skip
        return AnomalyScorer(ListeningMode.AWAY, active.model, policy.refractory_s), len(pairs)
    finally:
        await db.dispose()


def inactivity_delay(quiet: list[np.ndarray], policy: AnomalyPolicy, rng: np.random.Generator) -> tuple[float, int]:
    """Seconds past the span at which the worker flags the spell, and activity windows found in the quiet."""
    levels = np.concatenate([f[:, -1] for f in quiet])
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--week-days", type=int, default=7)
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--minutes-per-scene", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-part", choices=("evaluation", "training"), default="evaluation",
                        help="the test week's sources: the evaluation side (other sources than the learning days), "
                        "or the training side again (the same home's sources in other compositions)")
    args = parser.parse_args()
    policy = AnomalyPolicy(timezone="UTC")
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    config = BuildConfig()
    with Progress(transient=True) as progress:
        sources = collect_sources(config, Path.home() / ".cache/hearo/data-cache", progress,
                                  BuildSummary(manifest=CACHE / "unused.csv"))  # fmt: skip
    validation = split_groups(sources, config.val_fraction, config.seed)
    cached = CACHE / f"pools-{args.minutes_per_scene:g}-{args.seed}-{args.test_part}.pkl"
    if cached.exists():
        learn_pool, test_pool = pickle.loads(cached.read_bytes())
    else:
        started = time.time()
        learn_pool = build_pool("training", sources, validation, args.minutes_per_scene, args.seed, args.seed)
        test_pool = build_pool(args.test_part, sources, validation, args.minutes_per_scene, args.seed + 1, args.seed)
        cached.write_bytes(pickle.dumps((learn_pool, test_pool)))
        print(f"pools built in {time.time() - started:.0f} s")
    learning = compose_days(learn_pool, args.days, rng)
    scorer, pairs = asyncio.run(train_through_the_worker(learning, policy))

    week = compose_days(test_pool, args.week_days, rng)
    started, false_alarms = time.perf_counter(), []
    for i, features in enumerate(week):
        if scorer.judge(features, i * HOP_S) is not None:
            false_alarms.append(i * HOP_S)
    per_window_us = (time.perf_counter() - started) / len(week) * 1e6
    per_week = len(false_alarms) / args.week_days * 7

    detected: dict[str, list[bool]] = {"glass": [], "door": [], "fall": []}
    quiet_detected: list[bool] = []
    for kind, event in unusual_events(sources, rng, args.events):
        hour = float(rng.uniform(0, 24))
        scenes = next(s for h, s in reversed(RHYTHM) if h <= hour)
        scene = scenes[int(rng.integers(len(scenes)))]
        base = np.zeros(20 * SR)
        # The scene's audio again (its windows were cached, not its audio): recompose one minute.
        eval_side = [s for s in sources if s.label in (BACKGROUND, NEGATIVE) and _part(s, validation) == args.test_part]
        pools = _pools(eval_side)
        if scene == QUIET:
            base = _at_level(np.resize(pools.pick("ambience", rng, set()), 20 * SR), rng.uniform(-64, -50))
        else:
            base = _compose(scene, 20.0, pools, np.random.default_rng([args.seed, 99, len(quiet_detected)]))[0]
        onset = 8.0
        base = base.astype(np.float64)
        piece = _at_level(event, float(rng.uniform(-24, -12)))[: len(base) - int(onset * SR)]
        base[int(onset * SR): int(onset * SR) + len(piece)] += piece
        features, _ = features_of(base)
        judge = AnomalyScorer(ListeningMode.AWAY, scorer.model, policy.refractory_s)
        hit = False
        for i, f in enumerate(features):
            t = (i + 1) * HOP_S + 1.5  # the window's end (the first ends at 2 s)
            scored = judge.judge(f, t)
            if scored is not None and onset <= t <= onset + 10.0:
                hit = True
        detected[kind].append(hit)
        quiet_detected.append(hit)
        if scene == QUIET:
            detected.setdefault("in a quiet home", []).append(hit)
        else:
            detected.setdefault("over household sound", []).append(hit)

    delay, found = inactivity_delay(test_pool[QUIET], policy, rng)
    total = np.mean(quiet_detected)
    print()
    print(f"test sources: the {args.test_part} side of the split")
    print(f"learning: {args.days} days composed ({pairs} stored pairs); test week: {args.week_days} days "
          f"({len(week)} windows, scored in {per_window_us:.1f} µs a window)")  # fmt: skip
    print(f"false anomalies: {len(false_alarms)} in {args.week_days} days = {per_week:.2f} per week "
          f"(target <= 1)")  # fmt: skip
    print(f"unusual events flagged within 10 s: {total * 100:.1f} % of {len(quiet_detected)} (target >= 90 %)")
    for kind, hits in detected.items():
        print(f"  {kind}: {np.mean(hits) * 100:.1f} % of {len(hits)}")
    print(f"inactivity (12 h span, writes every {policy.activity_write_s:g} s, checks every "
          f"{policy.check_every_s:g} s): flagged at most {delay:.0f} s after the span (target <= 300 s); "
          f"activity found in 4 h of the quiet room: {found} windows")  # fmt: skip


if __name__ == "__main__":
    main()
