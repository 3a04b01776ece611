"""What the servers report and what they cost: Prometheus scrapes diffed over a run, and CPU
and RSS read from /proc for the processes listening on the gateway's and inference's ports.

/proc holds only this machine's processes: against a remote ``--url`` the CPU and RSS columns
stay empty and the metrics still come.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

GATEWAY_WINDOWS = "hearo_gateway_windows_total"
GATEWAY_LATE = "hearo_gateway_late_windows_total"
GATEWAY_HELD = "hearo_gateway_held_windows_total"
GATEWAY_DROPPED = "hearo_gateway_dropped_windows_total"
GATEWAY_LOOP_LAG = "hearo_gateway_loop_lag_seconds"
GATEWAY_INCIDENT_OPEN = "hearo_gateway_incident_open_seconds"
BATCH_WINDOWS = "hearo_inference_batch_windows"
QUEUE_WAIT = "hearo_inference_queue_wait_seconds"
SHED_WINDOWS = "hearo_inference_shed_windows_total"


def scrape(base_url: str) -> Samples:
    """Every sample of ``base_url``/metrics by (name, labels); empty when it cannot be read."""
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/metrics", timeout=10.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def merged(scrapes: list[Samples]) -> Samples:
    """Several processes' scrapes as one (the gateways of a box): counters and histograms add."""
    out: Samples = {}
    for samples in scrapes:
        for key, value in samples.items():
            out[key] = out.get(key, 0.0) + value
    return out


def diff(before: Samples, after: Samples) -> Samples:
    """``after`` less ``before``, sample by sample (counters and histograms grow)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= set(lbls))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """``name``'s samples keyed by one label's value (non-zero ones)."""
    found: dict[str, float] = {}
    for (n, lbls), value in samples.items():
        if n == name and value:
            key = dict(lbls).get(label, "")
            found[key] = found.get(key, 0.0) + value
    return found


def histogram_mean(samples: Samples, name: str) -> float | None:
    count = total(samples, f"{name}_count")
    return total(samples, f"{name}_sum") / count if count else None


def histogram_quantile(samples: Samples, name: str, q: float) -> float | None:
    """The ``q`` quantile of a histogram's observations, interpolated inside its bucket as
    Prometheus's ``histogram_quantile`` does; the last finite bound when it lies beyond."""
    buckets = sorted(
        (float(dict(lbls)["le"]), v) for (n, lbls), v in samples.items() if n == f"{name}_bucket"
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine, if /proc lets us see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class ProcessSample:
    """One look at a process: CPU seconds so far and resident memory now."""

    cpu_s: float
    rss_bytes: int


def sample_processes(pids: list[int | None]) -> ProcessSample | None:
    """The sum over ``pids`` (a box's gateway processes); None when any cannot be read."""
    samples = [sample_process(pid) for pid in pids]
    if not samples or any(sample is None for sample in samples):
        return None
    return ProcessSample(sum(s.cpu_s for s in samples if s), sum(s.rss_bytes for s in samples if s))


def sample_process(pid: int | None) -> ProcessSample | None:
    """``pid``'s CPU time (user + system, all threads) and RSS; None when it cannot be read."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    rss_kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    # Fields 14 and 15 of stat (utime, stime); the split starts at field 3.
    return ProcessSample((int(stat[11]) + int(stat[12])) / ticks, rss_kib * 1024)
