"""``hearo stats``: the outcome ledger's published figures, read from the database.

It reads the deployment's database directly (``HEARO_DATABASE_URL``, as ``hearo db
upgrade`` does), so it works without a running gateway and shows exactly what
``GET /v1/stats`` serves (:mod:`shared.incident_stats`). The imports are inside the command
for ``hearo --help``'s start-up speed.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer


def stats_command(
    days: Annotated[int, typer.Option(min=1, max=3650, help="The window: this many days up to now.")] = 90,
    url: Annotated[Optional[str], typer.Option(help="Database URL (default: from settings).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print GET /v1/stats's JSON.")] = False,
) -> None:
    """Per class: precision of reported incidents (from the agencies' answers), false-alarm and
    cancel rates, median detection to report. Classes under 5 incidents are suppressed."""
    import asyncio
    import json

    from shared.db import Database, database_url_from_env
    from shared.incident_stats import incident_stats

    async def read() -> dict[str, Any]:
        db = Database(url or database_url_from_env())
        try:
            return (await incident_stats(db, days=days)).to_json()
        finally:
            await db.dispose()

    figures = asyncio.run(read())
    typer.echo(json.dumps(figures, ensure_ascii=False) if json_output else render_stats(figures))


def render_stats(figures: dict[str, Any]) -> str:
    """The stats as a table for people (``--json`` gives the API's body)."""
    window = figures["window"]
    lines = [
        f"{window['since'][:19]} .. {window['until'][:19]} UTC (classes under {figures['min_count']} incidents suppressed)",
        f"{'class':<10}{'incidents':>10}{'cancel':>8}{'false al.':>10}{'reported':>9}{'answered':>9}"
        f"{'precision':>10}{'unreach.':>9}{'median s':>9}",
    ]
    for row in [*figures["classes"], {"class": "overall", **figures["overall"]}]:
        if row["suppressed"]:
            lines.append(f"{row['class']:<10}{'(suppressed)':>12}")
            continue
        outcomes = row["outcomes"] or {}
        lines.append(
            f"{row['class']:<10}{row['incidents']:>10}{_pct(row['cancel_rate']):>8}{_pct(row['false_alarm_rate']):>10}"
            f"{row['reported']:>9}{outcomes.get('answered', '-'):>9}{_pct(outcomes.get('precision')):>10}"
            f"{_pct(outcomes.get('unable_to_reach_share')):>9}{_num(row['median_detection_to_report_s']):>9}"
        )
    return "\n".join(lines)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
