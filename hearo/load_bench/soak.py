"""The soak: N homes streaming round after round for a long time, and what the servers hold.

Each round is one :func:`~hearo.load_bench.measure.measure` run (every home streams its
background with a smoke alarm at a known onset, at real time; the round's incidents are
cancelled). Halfway through each round, with every session open, the bench reads what would
grow if something leaked: each service's resident memory, open file descriptors and sockets
(from /proc), and the gateway's live asyncio tasks and database connections (its ``/metrics``).

The soak holds when every event of every round is detected, no window is dropped, and, from
the first third of the rounds after the warm-up to the last third, no measure grew by more than
``max_growth`` (5 %; :func:`growth`).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hearo.load_bench import server_usage as usage
from hearo.load_bench.devices import BenchDevices
from hearo.load_bench.measure import LoadResult, RunOptions, Target, measure, pid_of, start_delay_s

MAX_GROWTH = 0.05
GATEWAY_TASKS = "hearo_gateway_asyncio_tasks"
GATEWAY_DB_CONNECTIONS = "hearo_gateway_db_connections"


@dataclass(frozen=True)
class Footprint:
    """One look at the servers in the middle of a round (None: not readable from here)."""

    at_s: float
    gateway_rss_mib: float | None
    gateway_fds: int | None
    gateway_sockets: int | None
    gateway_tasks: int | None
    gateway_db_connections: int | None
    inference_rss_mib: float | None
    inference_fds: int | None

    def measures(self) -> dict[str, float | None]:
        return {name: value for name, value in vars(self).items() if name != "at_s"}


@dataclass(frozen=True)
class SoakResult:
    clients: int
    minutes: float
    warmup_rounds: int
    rounds: list[LoadResult]
    footprints: list[Footprint]
    growth: dict[str, float | None] = field(default_factory=dict)  # see growth()
    max_growth: float = MAX_GROWTH

    @property
    def events(self) -> int:
        return sum(r.detections.events for r in self.rounds)

    @property
    def missed(self) -> int:
        return sum(r.detections.missed for r in self.rounds)

    @property
    def dropped(self) -> int:
        return sum(r.dropped for r in self.rounds)

    @property
    def holds(self) -> bool:
        flat = all(g is None or g <= self.max_growth for g in self.growth.values())
        measured = len(self.footprints) > self.warmup_rounds
        return measured and flat and self.missed == 0 and self.dropped == 0


def soak(
    target: Target, devices: BenchDevices, clients: int, options: RunOptions, minutes: float, warmup_rounds: int = 1
) -> SoakResult:
    """Rounds of ``options.seconds`` each until ``minutes`` have passed (at least
    ``warmup_rounds`` + 2), a footprint halfway through each."""
    pids = {"gateway": pid_of(target.api_url), "inference": pid_of(target.inference_url)}
    started = time.monotonic()
    rounds: list[LoadResult] = []
    footprints: list[Footprint] = []
    while time.monotonic() - started < minutes * 60 or len(rounds) < warmup_rounds + 2:
        mid_round: list[Footprint] = []
        # Halfway through the round's audio every session is open.
        timer = threading.Timer(start_delay_s(clients) + options.seconds / 2,
                                lambda: mid_round.append(footprint(target, pids, time.monotonic() - started)))  # fmt: skip
        timer.start()
        try:
            rounds.append(measure(target, devices, clients, options))
        finally:
            timer.cancel()
        footprints += mid_round
    return SoakResult(clients, minutes, warmup_rounds, rounds, footprints, growth(footprints[warmup_rounds:]))


def footprint(target: Target, pids: dict[str, int | None], at_s: float) -> Footprint:
    """What the servers hold now: /proc for the processes ``pids``, the gateway's ``/metrics``."""
    gateway_metrics = usage.scrape(target.api_url)
    tasks = gateway_metrics.get((GATEWAY_TASKS, ()))
    connections = gateway_metrics.get((GATEWAY_DB_CONNECTIONS, ()))
    gateway, inference = (_process(pids[name]) for name in ("gateway", "inference"))
    return Footprint(
        round(at_s, 1), gateway[0], gateway[1], gateway[2], None if tasks is None else int(tasks),
        None if connections is None else int(connections), inference[0], inference[1],
    )  # fmt: skip


def growth(footprints: list[Footprint]) -> dict[str, float | None]:
    """Each measure's growth from the first third of ``footprints`` to the last, as the ratio
    of their medians less 1 (None where unread or zero). Medians of thirds, not the first and
    last samples: the allocator moves a process's resident memory by a tenth from one round to
    the next, up and down, which is not a leak; a leak moves the whole last third. A count
    (descriptors, sockets, tasks, connections) that moved by one is flat: one opened or closed
    a moment before the reading is not a leak, and with a few homes one is over 5 %."""
    if len(footprints) < 2:
        return {}
    third = max(1, len(footprints) // 3)
    rows = [f.measures() for f in footprints]
    grown: dict[str, float | None] = {}
    for name in rows[0]:
        early = [v for r in rows[:third] if (v := r[name]) is not None]
        late = [v for r in rows[-third:] if (v := r[name]) is not None]
        before = statistics.median(early) if early else None
        if not (before and late):
            grown[name] = None
            continue
        after = statistics.median(late)
        if not name.endswith("_rss_mib") and abs(after - before) <= 1:
            after = before
        grown[name] = round(after / before - 1.0, 4)
    return grown


def _process(pid: int | None) -> tuple[float | None, int | None, int | None]:
    """(RSS MiB, open descriptors, of which sockets) of ``pid``."""
    sample = usage.sample_process(pid)
    if pid is None or sample is None:
        return None, None, None
    rss_mib = round(sample.rss_bytes / 2**20, 1)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return rss_mib, None, None
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(fd).startswith("socket:")
        except OSError:
            continue  # closed since the listing
    return rss_mib, len(fds), sockets

