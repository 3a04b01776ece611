"""One run of the load bench at N homes, and the ramp over N.

A run registers (or reuses) N devices, scrapes both services' ``/metrics`` and samples their
processes, streams every home from a pool of client processes starting together, samples and
scrapes again, checks that no incident of the run is left unresolved, and judges each home's
detections against its planned event.
"""

from __future__ import annotations

import enum
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hearo.load_bench import server_usage as usage
from hearo.load_bench.accounting import DetectionSummary, judge, summarise
from hearo.load_bench.audio import event_for
from hearo.load_bench.clients import Home, ProcessPlan, ProcessReport, run_homes
from hearo.load_bench.devices import BenchDevices
from hearo.load_bench.ramp import Ramp, find_capacity

HOMES_PER_PROCESS = 50
MAX_ERRORS_KEPT = 10


@dataclass(frozen=True)
class Target:
    """The system under test: the gateway's base URL (its REST API registers and cancels), the
    inference service's, and the base URLs of more gateways of the same system (sharing its
    database and Redis), over which the homes are spread as a load balancer would."""

    api_url: str
    inference_url: str
    more_gateways: tuple[str, ...] = ()

    @property
    def gateway_urls(self) -> tuple[str, ...]:
        return (self.api_url, *self.more_gateways)

    def stream_url_for(self, home: int) -> str:
        """Home ``home``'s gateway, round robin."""
        gateway = self.gateway_urls[home % len(self.gateway_urls)]
        return gateway.replace("http", "ws", 1).rstrip("/") + "/v1/stream"


@dataclass(frozen=True)
class RunOptions:
    seconds: float = 30.0
    event_s: float = 10.0
    tolerance_s: float = 2.0
    sample_rate: int = 16_000
    processes: int | None = None  # None: one per HOMES_PER_PROCESS homes, at most one per core
    household: str | None = None
    aligned: bool = False  # every home at the same phase of the hop (``clients``' docstring)


@dataclass(frozen=True)
class ServerCost:
    """One service's CPU over a run and its peak resident memory during it, whole and per stream
    (the growth over its resident memory before the run); None where it is not on this box."""

    cpu_cores: float | None = None
    cpu_per_stream: float | None = None
    rss_mib: float | None = None
    rss_growth_per_stream_mib: float | None = None


@dataclass(frozen=True)
class LoadResult:
    clients: int
    seconds: float
    wall_s: float
    detections: DetectionSummary
    windows: int
    late_windows: int
    held_windows: int  # kept from the model by the novelty gate (they took the last judged scores)
    dropped_windows: dict[str, int]
    shed_windows: dict[str, int]
    batch_windows_mean: float | None
    queue_wait_mean_s: float | None
    queue_wait_p99_s: float | None
    loop_lag_p99_s: float | None  # the gateways' event loops: how late a timer ran
    incident_open_p99_s: float | None  # a detection to its incident recorded
    gateway: ServerCost
    inference: ServerCost
    client_cpu_cores: float
    behind_warnings: int
    incidents_opened: int
    incidents_cancelled: int
    incidents_unresolved: int
    errors: list[str] = field(default_factory=list)
    gateway_processes: int = 1  # ``gateway`` sums their CPU and memory

    @property
    def dropped(self) -> int:
        return sum(self.dropped_windows.values())


class LatencyBound(enum.StrEnum):
    """Which latency the capacity criterion bounds."""

    ONSET = "onset"  # onset to detection, the detector's own delay included
    LAG = "lag"  # the servers' lag only: what load adds


def holds(result: LoadResult, max_p99_s: float, bound: LatencyBound = LatencyBound.ONSET) -> bool:
    """The capacity criterion: every event detected, the bounded latency's p99 within
    ``max_p99_s``, no window dropped."""
    spread = result.detections.latency if bound is LatencyBound.ONSET else result.detections.lag
    p99 = spread.p99
    return result.detections.missed == 0 and p99 is not None and p99 <= max_p99_s and result.dropped == 0


def measure(target: Target, devices: BenchDevices, clients: int, options: RunOptions) -> LoadResult:
    """Stream ``clients`` homes at real time against ``target`` and account for the run."""
    homes = [
        Home(i, d.token, event_for(i, options.seconds, options.event_s), target.stream_url_for(i))
        for i, d in enumerate(devices.first(clients))
    ]
    processes = options.processes or min(os.cpu_count() or 1, math.ceil(clients / HOMES_PER_PROCESS))
    pids = {"gateway": [pid_of(url) for url in target.gateway_urls], "inference": [pid_of(target.inference_url)]}
    gateway_before, inference_before = _scrape_gateways(target), usage.scrape(target.inference_url)
    start_at = time.time() + start_delay_s(clients)
    plans = [
        ProcessPlan(target.api_url, homes[p::processes], options.seconds, options.sample_rate, start_at, options.household,
                    options.aligned)
        for p in range(processes)
    ]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pending = pool.map_async(run_homes, plans)
        time.sleep(max(0.0, start_at - time.time()))
        before = {name: usage.sample_processes(group) for name, group in pids.items()}
        peak_rss = {name: 0 for name in pids}
        while not pending.ready():  # RSS peaks while the sessions are open, not after
            for name, group in pids.items():
                sample = usage.sample_processes(group)
                peak_rss[name] = max(peak_rss[name], sample.rss_bytes if sample else 0)
            pending.wait(1.0)
        reports: list[ProcessReport] = pending.get()
    wall_s = time.time() - start_at
    after = {name: usage.sample_processes(group) for name, group in pids.items()}
    gateway = usage.diff(gateway_before, _scrape_gateways(target))
    inference = usage.diff(inference_before, usage.scrape(target.inference_url))

    home_reports = sorted((h for r in reports for h in r.homes), key=lambda h: h.index)
    outcomes = [judge(home.event, report.detections, options.tolerance_s) for home, report in zip(homes, home_reports, strict=True)]
    errors = [f"home {h.index}: {e}" for h in home_reports for e in h.errors]
    return LoadResult(
        clients=clients,
        seconds=options.seconds,
        wall_s=round(wall_s, 2),
        detections=summarise(outcomes),
        windows=int(usage.total(gateway, usage.GATEWAY_WINDOWS)),
        late_windows=int(usage.total(gateway, usage.GATEWAY_LATE)),
        held_windows=int(usage.total(gateway, usage.GATEWAY_HELD)),
        dropped_windows={k: int(v) for k, v in usage.by_label(gateway, usage.GATEWAY_DROPPED, "reason").items()},
        shed_windows={k: int(v) for k, v in usage.by_label(inference, usage.SHED_WINDOWS, "reason").items()},
        batch_windows_mean=_round(usage.histogram_mean(inference, usage.BATCH_WINDOWS)),
        queue_wait_mean_s=_round(usage.histogram_mean(inference, usage.QUEUE_WAIT), 4),
        queue_wait_p99_s=_round(usage.histogram_quantile(inference, usage.QUEUE_WAIT, 0.99), 4),
        loop_lag_p99_s=_round(usage.histogram_quantile(gateway, usage.GATEWAY_LOOP_LAG, 0.99), 4),
        incident_open_p99_s=_round(usage.histogram_quantile(gateway, usage.GATEWAY_INCIDENT_OPEN, 0.99), 4),
        gateway=_cost(before["gateway"], after["gateway"], peak_rss["gateway"], wall_s, clients),
        inference=_cost(before["inference"], after["inference"], peak_rss["inference"], wall_s, clients),
        client_cpu_cores=round(sum(r.cpu_s for r in reports) / wall_s, 3),
        behind_warnings=sum(h.behind_warnings for h in home_reports),
        incidents_opened=sum(len(h.incidents) for h in home_reports),
        incidents_cancelled=sum(len(h.cancelled) for h in home_reports),
        incidents_unresolved=len(devices.unresolved_incidents(devices.first(clients))),
        errors=errors[:MAX_ERRORS_KEPT] + ([f"... {len(errors) - MAX_ERRORS_KEPT} more"] if len(errors) > MAX_ERRORS_KEPT else []),
        gateway_processes=len(target.gateway_urls),
    )


def _scrape_gateways(target: Target) -> usage.Samples:
    return usage.merged([usage.scrape(url) for url in target.gateway_urls])


def start_delay_s(clients: int) -> float:
    """How long after its call a run's audio starts: time for the pool to start and make the audio."""
    return 3.0 + 0.02 * clients


def ramp(
    target: Target, devices: BenchDevices, options: RunOptions, max_p99_s: float, bound: LatencyBound, start: int, limit: int
) -> Ramp[LoadResult]:
    """Double N from ``start`` until a run does not hold, then bisect (see :mod:`.ramp`)."""
    return find_capacity(lambda n: measure(target, devices, n, options), lambda r: holds(r, max_p99_s, bound), start, limit)


def pid_of(url: str) -> int | None:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    return usage.listening_pid(parts.port or (443 if parts.scheme == "https" else 80))


def _cost(
    before: usage.ProcessSample | None, after: usage.ProcessSample | None, peak_rss: int, wall_s: float, clients: int
) -> ServerCost:
    if before is None or after is None:
        return ServerCost()
    cores = (after.cpu_s - before.cpu_s) / wall_s
    mib = 1024 * 1024
    return ServerCost(
        cpu_cores=round(cores, 3),
        cpu_per_stream=round(cores / clients, 4),
        rss_mib=round(max(peak_rss, after.rss_bytes) / mib, 1),
        rss_growth_per_stream_mib=round((max(peak_rss, after.rss_bytes) - before.rss_bytes) / mib / clients, 2),
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
