"""``hearo review``: the review loop for a deployment's operators (docs/review.md).

* ``hearo review``: the queue of segments not yet labelled, one key per label
  (:mod:`hearo.review_queue`);
* ``hearo review export --out DIR``: the reviewed, donated segments as WAV files and a
  manifest with the consent they rest on, for ``hearo data build --extra`` and ``hearo train
  --extra``;
* ``hearo review report``: per-class precision from the reviewed incidents.

Like ``hearo stats`` it reads the deployment's database directly (``HEARO_DATABASE_URL``) and
its clip store (``HEARO_CLIPS_*``): an operator's tool, run where the services' credentials
are, that works without a running gateway. A reviewer without those credentials uses the
gateway's review page (``/web/review.html``) with the reviewer token. The imports are inside
the commands for ``hearo --help``'s start-up speed.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from shared.clips import ClipStore
    from shared.db import Database

review_app = typer.Typer(help="Review detected segments: label them, export the donated ones, report precision.")

ReviewerOption = Annotated[Optional[str], typer.Option(help="Your name, kept with each label and on the clip's audit trail (default: your login).")]
UrlOption = Annotated[Optional[str], typer.Option(help="Database URL (default: from settings).")]


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    reviewer: ReviewerOption = None,
    play_with: Annotated[Optional[str], typer.Option(help="Player command run with each WAV file, e.g. 'aplay -q' (default: print the file's path).")] = None,
    redo: Annotated[bool, typer.Option("--redo", help="Also segments already labelled (a new label is added; the history stays).")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many segments, oldest first.")] = 500,
    url: UrlOption = None,
) -> None:
    """The review queue: each segment's decision, average scores and score strip, its audio, one key per label."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio
    import tempfile

    from hearo.review_queue import QueueSummary, ReviewQueue
    from shared.review import list_segments

    name = _reviewer(reviewer)

    async def run(db: Database, store: ClipStore) -> QueueSummary | None:
        segments = await list_segments(db, pending=not redo, limit=limit)
        if not segments:
            return None
        with tempfile.TemporaryDirectory(prefix="hearo-review-") as folder:
            queue = ReviewQueue(db, store, segments, reviewer=name, audio_dir=Path(folder), play_with=play_with,
                                say=typer.echo)
            return await queue.run()

    summary = asyncio.run(_with_deployment(url, run))
    if summary is None:
        typer.echo("nothing to review" + ("" if redo else " (--redo to label reviewed segments again)"))
        return
    typer.echo(f"labelled {summary.labelled}, skipped {summary.skipped}, no longer reviewable {summary.gone}")


@review_app.command("export")
def export_command(
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for <label>/<incident>.wav and manifest.csv (an earlier export there is brought up to date).")],
    reviewer: ReviewerOption = None,
    url: UrlOption = None,
) -> None:
    """Export the reviewed segments whose owners donated them, with the reviewed label and the consent."""
    import asyncio

    from shared.review import ExportSummary, export_reviewed

    name = _reviewer(reviewer)

    async def run(db: Database, store: ClipStore) -> ExportSummary:
        return await export_reviewed(db, store, out, reviewer=name)

    try:
        summary = asyncio.run(_with_deployment(url, run))
    except OSError as exc:
        typer.echo(f"hearo review export: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"exported {summary.exported} segments to {summary.manifest} (donated but not labelled: "
               f"{summary.unreviewed}, unclear: {summary.unclear}, gone: {summary.gone}, earlier files removed: {summary.removed})")


@review_app.command("report")
def report_command(
    kind: Annotated[Optional[str], typer.Option(help="Only incidents of this kind (emergency, anomaly, child_safety).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON (GET /v1/review/report's body).")] = False,
    url: UrlOption = None,
) -> None:
    """Per class the system raised: reviewed incidents, how many reviewers confirmed, the precision."""
    import asyncio
    import json

    from shared.db import Database, database_url_from_env
    from shared.incident_state import IncidentKind
    from shared.review import review_precision

    if kind is not None and kind not in {k.value for k in IncidentKind}:
        typer.echo(f"hearo review report: unknown kind {kind!r}; known: {', '.join(k.value for k in IncidentKind)}", err=True)
        raise typer.Exit(2)

    async def read() -> dict[str, Any]:
        db = Database(url or database_url_from_env())
        try:
            return (await review_precision(db, kind=kind)).to_json()
        finally:
            await db.dispose()

    report = asyncio.run(read())
    typer.echo(json.dumps(report, ensure_ascii=False) if json_output else render_report(report))


def render_report(report: dict[str, Any]) -> str:
    """The precision table for people (``--json`` gives the API's body)."""
    lines = [f"{'raised as':<12}{'reviewed':>9}{'unclear':>8}{'confirmed':>10}{'precision':>10}  corrected to"]
    for row in [*report["classes"], report["overall"]]:
        precision = "-" if row["precision"] is None else f"{100 * row['precision']:.1f}%"
        corrected = ", ".join(f"{label} {count}" for label, count in row["corrected"].items()) or "-"
        lines.append(f"{row['class']:<12}{row['reviewed']:>9}{row['unclear']:>8}{row['confirmed']:>10}{precision:>10}  {corrected}")
    lines.append("precision = confirmed / (reviewed - unclear), over each incident's newest label")
    return "\n".join(lines)


def _reviewer(given: str | None) -> str:
    name = (given or getpass.getuser()).strip()
    if not name or len(name) > 64:
        typer.echo("hearo review: --reviewer must be 1 to 64 characters", err=True)
        raise typer.Exit(2)
    return name


async def _with_deployment(url: str | None, work: Any) -> Any:
    """Run ``work(db, store)`` on the deployment's database and clip store."""
    from shared.clips import ClipStorageSettings, create_clip_store
    from shared.db import Database, database_url_from_env

    db = Database(url or database_url_from_env())
    try:
        return await work(db, create_clip_store(ClipStorageSettings()))
    finally:
        await db.dispose()
