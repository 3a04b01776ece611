"""What preloading buys the reviewer in ``hearo review``: the time from a key to the next
segment on screen, with the next segment fetched in the background (as shipped) and, for
comparison, fetched only when asked for (the time one fetch takes: database read, audit entry,
FLAC read and decode, WAV write, for a 30 s clip).

A SQLite deployment in a temporary folder with ``--segments`` donated false alarms; the
"reviewer" presses a key every ``--pace`` seconds (listening). Prints both medians in ms.

    .venv/bin/python bench/bench_review_queue.py --segments 20 --pace 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hearo.review_queue import ReviewQueue  # noqa: E402
from shared.db import Database, upgrade_database  # noqa: E402
from shared.review import list_segments  # noqa: E402
from tests.alerting_support import make_device  # noqa: E402
from tests.review_support import cancelled, clip_store, incident_with_clip  # noqa: E402


async def main(segments: int, pace_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="hearo-bench-review-") as folder:
        root = Path(folder)
        url = f"sqlite+aiosqlite:///{root / 'hearo.db'}"
        await asyncio.to_thread(upgrade_database, url)
        db = Database(url)
        store = clip_store(root)
        for i in range(segments):
            incident = await incident_with_clip(db, store, await make_device(db), "fire", seed=i)
            await cancelled(db, incident, donate=True)
        queue_segments = await list_segments(db)

        shown: list[float] = []
        pressed = [0.0]

        def keys() -> str:
            if pressed[0]:
                shown.append(time.perf_counter() - pressed[0])
            time.sleep(pace_s)  # listening
            pressed[0] = time.perf_counter()
            return "s"

        audio = root / "audio"
        audio.mkdir()
        queue = ReviewQueue(db, store, queue_segments, reviewer="bench", audio_dir=audio, keys=keys, say=lambda _: None)
        await queue.run()
        fetches = []
        for segment in queue_segments:
            started = time.perf_counter()
            await queue._prepare(segment)  # what the reviewer would wait for without the preload
            fetches.append(time.perf_counter() - started)
        await db.dispose()
    print(f"{segments} segments of 30 s, a key every {pace_s} s")
    print(f"key to the next segment shown, preloaded: median {1000 * statistics.median(shown):.1f} ms "
          f"(max {1000 * max(shown):.1f} ms)")
    print(f"one fetch (what it would be without the preload): median {1000 * statistics.median(fetches):.1f} ms "
          f"(max {1000 * max(fetches):.1f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.5)
    options = parser.parse_args()
    asyncio.run(main(options.segments, options.pace))
