"""`hearo bench ...`: measurements against a running system (docs/performance.md)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from hearo.load_bench.measure import Target

bench_app = typer.Typer(help="Measure a running system: how many homes one box protects.", no_args_is_help=True)


@bench_app.command("load")
def load(
    clients: Annotated[int, typer.Option("--clients", "-n", min=1, help="Homes streaming at once (the start, with --ramp).")] = 4,
    seconds: Annotated[float, typer.Option(min=12.0, help="Audio per home, streamed at real time.")] = 30.0,
    ramp: Annotated[bool, typer.Option("--ramp", help="Double N, then bisect, to the largest N that holds.")] = False,
    max_clients: Annotated[int, typer.Option(min=1, help="The ramp's upper bound.")] = 200,
    max_p99: Annotated[float, typer.Option(help="The bound on p99 latency (s) a run must hold.")] = 1.5,
    bound: Annotated[str, typer.Option(help="Which latency --max-p99 bounds: onset (onset to detection) or lag (the servers' part).")] = "onset",
    url: Annotated[list[str], typer.Option(help="Gateway base URL; repeat it for each gateway of one system, and the homes are spread over them.")] = ["http://127.0.0.1:8000"],
    inference_url: Annotated[str, typer.Option(help="Inference service base URL (its /metrics).")] = "http://127.0.0.1:8001",
    start_system: Annotated[bool, typer.Option("--start-system", help="Run `hearo run` in a temporary folder for the bench (ignores --url).")] = False,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="With --start-system: the novelty gate off, every window to the model (the figure beside the gate's).")] = False,
    gateways: Annotated[int, typer.Option(min=1, help="With --start-system: gateway processes, as docker-compose runs them (more than one shares events through --redis-url).")] = 1,
    redis_url: Annotated[str, typer.Option(envvar="HEARO_REDIS_URL", help="With --gateways above 1: the Redis the gateways share (one no other Hear-o uses).")] = "redis://127.0.0.1:6379/0",
    database_url: Annotated[str, typer.Option(help="With --start-system: an empty PostgreSQL database for the system (needed by --gateways above 1), e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/hearo_bench.")] = "",
    household: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Folder of .wav/.flac household recordings for the backgrounds (default: synthesised).")] = None,
    sample_rate: Annotated[int, typer.Option(help="The clients' PCM rate (Hz).")] = 16_000,
    event_seconds: Annotated[float, typer.Option(min=4.0, help="How long each home's smoke alarm sounds.")] = 10.0,
    tolerance: Annotated[float, typer.Option(help="A detection this far outside its event (stream s) is spurious.")] = 2.0,
    processes: Annotated[Optional[int], typer.Option(min=1, help="Client processes (default: one per 50 homes, at most one per core).")] = None,
    aligned: Annotated[bool, typer.Option("--aligned", help="Every home streams at the same phase of the hop (the worst case, as after a reconnect storm), not spread over it as independent homes are.")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """Stream N homes, each a household background with a smoke alarm at a known onset, and
    report latency, misses, spurious detections, dropped windows and the servers' cost. Every
    incident it opens is cancelled; its devices are erased at the end. Exit 1 when the run does
    not hold (with --ramp: when no N does)."""
    from rich.console import Console

    from hearo.load_bench import measure as bench
    from hearo.load_bench.devices import BenchDevices, RegistrationRefused
    from hearo.load_bench.ramp import Ramp
    from hearo.load_bench.report import show, write_json
    from shared.protocol import SAMPLE_RATES

    if bound not in tuple(bench.LatencyBound):
        raise typer.BadParameter("--bound must be onset or lag")
    latency_bound = bench.LatencyBound(bound)
    if sample_rate not in SAMPLE_RATES:
        raise typer.BadParameter(f"--sample-rate must be one of {', '.join(map(str, SAMPLE_RATES))}")
    console = Console()
    options = bench.RunOptions(seconds, event_seconds, tolerance, sample_rate, processes, str(household) if household else None, aligned)
    with ExitStack() as stack:
        target = _target(stack, console, start_system, not no_gate, max(max_clients, clients), url, inference_url, gateways, redis_url, database_url)
        devices = BenchDevices(target.api_url)
        try:
            if ramp:
                found = bench.ramp(target, devices, options, max_p99, latency_bound, start=min(clients, max_clients), limit=max_clients)
                show(console, found, max_p99, latency_bound)
                held = found.capacity > 0
                result: bench.LoadResult | Ramp[bench.LoadResult] = found
            else:
                result = bench.measure(target, devices, clients, options)
                show(console, result, max_p99, latency_bound)
                held = bench.holds(result, max_p99, latency_bound)
        except RegistrationRefused as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        finally:
            for refusal in devices.erase_all():
                console.print(f"[yellow]bench device not erased: {refusal}[/]")
        if json_path:
            write_json(json_path, result)
    raise typer.Exit(0 if held else 1)


@bench_app.command("soak")
def soak(
    clients: Annotated[int, typer.Option("--clients", "-n", min=1, help="Homes streaming at once.")] = 100,
    minutes: Annotated[float, typer.Option(min=0.0, help="How long to go on (at least the warm-up and two more rounds).")] = 30.0,
    round_seconds: Annotated[float, typer.Option(min=12.0, help="Audio per home per round, with one smoke alarm.")] = 60.0,
    warmup_rounds: Annotated[int, typer.Option(min=0, help="Rounds before the growth is measured from.")] = 1,
    url: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000",
    inference_url: Annotated[str, typer.Option(help="Inference service base URL (its /metrics).")] = "http://127.0.0.1:8001",
    start_system: Annotated[bool, typer.Option("--start-system", help="Run `hearo run` in a temporary folder for the soak (ignores --url).")] = False,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="With --start-system: the novelty gate off.")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the results here.")] = None,
) -> None:
    """Stream N homes round after round for MINUTES and watch what the servers hold halfway
    through each round: memory, descriptors, sockets, event-loop tasks, database connections.
    Holds when every event is detected, no window dropped, and nothing grew by more than 5 %
    after the warm-up. Exit 1 when it does not hold."""
    from rich.console import Console

    from hearo.load_bench.devices import BenchDevices, RegistrationRefused
    from hearo.load_bench.measure import RunOptions
    from hearo.load_bench.report import soak_table, write_json
    from hearo.load_bench.soak import soak as run_soak

    console = Console()
    with ExitStack() as stack:
        target = _target(stack, console, start_system, not no_gate, clients, [url], inference_url)
        devices = BenchDevices(target.api_url)
        try:
            result = run_soak(target, devices, clients, RunOptions(seconds=round_seconds), minutes, warmup_rounds)
        except RegistrationRefused as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        finally:
            for refusal in devices.erase_all():
                console.print(f"[yellow]bench device not erased: {refusal}[/]")
        console.print(soak_table(result))
        if json_path:
            write_json(json_path, result)
    raise typer.Exit(0 if result.holds else 1)


def _target(
    stack: ExitStack, console: Console, start_system: bool, gate: bool, clients: int, urls: list[str], inference_url: str,
    gateways: int = 1, redis_url: str = "", database_url: str = "",
) -> Target:
    """The system under test: a fresh ``hearo run`` in a temporary folder (held open by
    ``stack``) with ``gateways`` gateway processes, or the one whose gateways are at ``urls``."""
    from hearo.load_bench.measure import Target
    from hearo.load_bench.system import SystemDidNotStart, embedded_system

    if not start_system:
        return Target(urls[0], inference_url, tuple(urls[1:]))
    console.print(f"starting hearo run in a temporary folder ({gateways} gateway process{'es' if gateways > 1 else ''})…")
    try:
        return stack.enter_context(embedded_system(clients + 10, gate, gateways, redis_url, database_url))
    except (SystemDidNotStart, ValueError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(3) from None
