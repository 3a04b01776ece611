"""`hearo device thresholds` and `hearo device summary`: what this device's cancels taught its
thresholds (and undoing a change), and what it heard this week, over the gateway's REST API
(:class:`hearo.incident_client.IncidentClient`; exit codes as ``hearo incident``'s).

The rule and its bounds: docs/evidence.md ("Cancels that teach").
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

ApiOption = Annotated[str, typer.Option(help="Gateway base URL.")]
TokenOption = Annotated[Optional[str], typer.Option(envvar="HEARO_TOKEN", help="Device token.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answer.")]


def thresholds_command(
    undo: Annotated[Optional[int], typer.Option(min=1, help="Undo this adjustment (its id in the list): its class goes back to what it was before.")] = None,
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Each class's threshold: the base, the one in force, how high learning may take it, and
    every change this device's false-alarm cancels made (undone ones too)."""
    from hearo.incident_client import run_call

    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    if undo is None:
        raise typer.Exit(run_call(api, token, json_output, lambda c: c.thresholds(), render_thresholds))
    raise typer.Exit(run_call(api, token, json_output, lambda c: c.undo_threshold(undo), render_undo))


def summary_command(
    since: Annotated[Optional[str], typer.Option(help="From (ISO 8601; local time without a zone). Default: 7 days before --until.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Until (ISO 8601). Default: now.")] = None,
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """What this device heard, what was cancelled and why, and what learning changed (the last 7 days)."""
    from hearo.incident_client import parse_time, run_call

    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    raise typer.Exit(
        run_call(
            api, token, json_output,
            lambda c: c.summary(since=parse_time(since) if since else None, until=parse_time(until) if until else None),
            render_summary,
        )
    )  # fmt: skip


def render_thresholds(body: dict[str, Any]) -> Table:
    """One row per class; its changes as ``#id from → to`` (``undone`` when undone)."""
    table = Table(show_header=True, header_style="bold")
    for column in ("class", "base", "now", "ceiling", "changes"):
        table.add_column(column)
    for row in body["classes"]:
        changes = ", ".join(
            f"#{a['id']} {a['threshold_from']:.3f} → {a['threshold_to']:.3f}" + (" (undone)" if a["undone_at"] else "")
            for a in row["adjustments"]
        )
        table.add_row(row["class"], f"{row['base']:.3f}", f"{row['current']:.3f}", f"{row['ceiling']:.3f}", changes or "-")
    return table


def render_undo(body: dict[str, Any]) -> str:
    if not body["undone"]:
        return "nothing to undo: already undone"
    undone = body["undone"]
    current = next(c["current"] for c in body["thresholds"]["classes"] if c["class"] == undone[0]["class"])
    ids = ", ".join(f"#{a['id']}" for a in undone)
    return f"undone {ids}: the {undone[0]['class']} threshold is {current:.3f} again"


def render_summary(body: dict[str, Any]) -> str:
    """The summary's own text in English and Korean, then the counts per class."""
    lines = [body["text"]["en"], body["text"]["ko"], ""]
    for row in body["heard"]["classes"]:
        states = ", ".join(f"{state} {count}" for state, count in sorted(row["states"].items()))
        lines.append(f"{row['class']:<10} {row['incidents']:>3} incidents ({states})")
    counted = [f"{kind} {count}" for kind, count in body["cancelled"]["by_kind"].items() if count]
    lines.append("cancelled: " + (", ".join(counted) if counted else "none"))
    return "\n".join(lines)
