"""The bench's results on the terminal (a rich table) and as JSON (``--json PATH``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hearo.load_bench.accounting import Spread
from hearo.load_bench.measure import LatencyBound, LoadResult, ServerCost
from hearo.load_bench.ramp import Ramp
from hearo.load_bench.soak import SoakResult


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _spread(spread: Spread) -> str:
    return f"{_s(spread.p50)} / {_s(spread.p99)} / {_s(spread.max)}"


def _cost(cost: ServerCost) -> str:
    if cost.cpu_cores is None:
        return "– (not on this machine)"
    return (f"{cost.cpu_cores:.2f} cores ({cost.cpu_per_stream:.4f}/stream), "
            f"RSS {cost.rss_mib:.0f} MiB (+{cost.rss_growth_per_stream_mib:.2f}/stream)")  # fmt: skip


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "0"


def result_table(result: LoadResult) -> Table:
    """One run, a row per figure."""
    d = result.detections
    table = Table(title=f"hearo bench load: {result.clients} homes × {result.seconds:g} s at real time")
    table.add_column("measure")
    table.add_column("value")
    rows = [
        ("onset → detection p50 / p99 / max (s)", _spread(d.latency)),
        ("  of which detector (stream time)", _spread(d.detector_latency)),
        ("  of which server lag", _spread(d.lag)),
        ("events detected / missed", f"{d.detected} / {d.missed}"),
        ("spurious detections", f"{d.spurious}" + (f" ({_counts(d.spurious_classes)})" if d.spurious else "")),
        ("windows classified / late", f"{result.windows} / {result.late_windows}"),
        ("windows held by the novelty gate", str(result.held_windows)),
        ("windows dropped", _counts(result.dropped_windows)),
        ("windows shed by inference", _counts(result.shed_windows)),
        ("behind warnings", str(result.behind_warnings)),
        ("batch size (mean windows)", _s(result.batch_windows_mean)),
        ("queue wait mean / p99 (s)", f"{_s(result.queue_wait_mean_s)} / {_s(result.queue_wait_p99_s)}"),
        ("gateway event loop lag p99 (s)", _s(result.loop_lag_p99_s)),
        ("incident recorded after detection p99 (s)", _s(result.incident_open_p99_s)),
        ("gateway" if result.gateway_processes == 1 else f"gateways ({result.gateway_processes} processes)", _cost(result.gateway)),
        ("inference", _cost(result.inference)),
        ("clients (not the servers')", f"{result.client_cpu_cores:.2f} cores"),
        ("incidents opened / cancelled / unresolved",
         f"{result.incidents_opened} / {result.incidents_cancelled} / {result.incidents_unresolved}"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    for error in result.errors:
        table.add_row("[red]error[/]", error)
    return table


def ramp_table(ramp: Ramp[LoadResult], max_p99_s: float, bound: LatencyBound) -> Table:
    """A ramp, a row per run in the order run."""
    table = Table(title=f"hearo bench load --ramp: capacity {ramp.capacity} homes "
                        f"({bound} p99 ≤ {max_p99_s:g} s, none dropped or missed)")  # fmt: skip
    for column in ("homes", "held", "onset p50 / p99 / max (s)", "lag p99 (s)", "missed", "spurious", "dropped", "late", "gateway cores", "inference cores"):
        table.add_column(column)
    for step in ramp.steps:
        r = step.result
        table.add_row(
            str(step.clients), "yes" if step.held else "[red]no[/]", _spread(r.detections.latency), _s(r.detections.lag.p99),
            str(r.detections.missed), str(r.detections.spurious), str(r.dropped), str(r.late_windows),
            _s(r.gateway.cpu_cores), _s(r.inference.cpu_cores),
        )  # fmt: skip
    return table


_SHORT = {
    "gateway_rss_mib": "gw RSS MiB", "gateway_fds": "gw fds", "gateway_sockets": "gw sockets", "gateway_tasks": "gw tasks",
    "gateway_db_connections": "gw db conns", "inference_rss_mib": "inf RSS MiB", "inference_fds": "inf fds",
}  # fmt: skip


def soak_table(soak: SoakResult) -> Table:
    """A soak: a row per footprint (halfway through each round), then each measure's growth."""
    held = "[green]holds[/]" if soak.holds else "[red]does not hold[/]"
    table = Table(title=f"hearo bench soak: {soak.clients} homes, {len(soak.rounds)} rounds over {soak.minutes:g} min: "
                        f"{held} (events {soak.events}, missed {soak.missed}, dropped {soak.dropped})")  # fmt: skip
    names = list(soak.footprints[0].measures()) if soak.footprints else []
    for column in ("at (s)", "onset p99 (s)", *names):
        table.add_column(_SHORT.get(column, column))
    for i, (result, footprint) in enumerate(zip(soak.rounds, soak.footprints)):
        warm = " (warm-up)" if i < soak.warmup_rounds else ""
        table.add_row(f"{footprint.at_s:g}{warm}", _s(result.detections.latency.p99),
                      *("–" if v is None else f"{v:g}" for v in footprint.measures().values()))  # fmt: skip
    table.add_row(f"growth (≤ {soak.max_growth:.0%})", "", *(
        "–" if g is None else (f"{g:+.1%}" if g <= soak.max_growth else f"[red]{g:+.1%}[/]")
        for g in (soak.growth.get(name) for name in names)))  # fmt: skip
    return table


def write_json(path: Path, data: LoadResult | Ramp[LoadResult] | SoakResult) -> None:
    """``data`` as JSON (dataclasses as objects) at ``path``."""
    body: dict[str, Any] = dataclasses.asdict(data)
    if isinstance(data, LoadResult):
        body["dropped"] = data.dropped
    if isinstance(data, SoakResult):
        body |= {"holds": data.holds, "events": data.events, "missed": data.missed, "dropped": data.dropped}
    path.write_text(json.dumps(body, indent=2) + "\n")


def show(console: Console, data: LoadResult | Ramp[LoadResult], max_p99_s: float, bound: LatencyBound) -> None:
    """The table, and a warning when the bound is out of reach at any load: the detector
    alone takes longer than it allows."""
    results = [data] if isinstance(data, LoadResult) else [step.result for step in data.steps]
    console.print(result_table(data) if isinstance(data, LoadResult) else ramp_table(data, max_p99_s, bound))
    detector_p50 = min((r.detections.detector_latency.p50 for r in results if r.detections.detector_latency.p50 is not None), default=None)
    if bound is LatencyBound.ONSET and detector_p50 is not None and detector_p50 > max_p99_s:
        console.print(f"[yellow]The detector alone needs {detector_p50:.2f} s of audio after the onset (p50), more than "
                      f"--max-p99 {max_p99_s:g} s allows at any load; --bound lag bounds only what load adds.[/]")  # fmt: skip
