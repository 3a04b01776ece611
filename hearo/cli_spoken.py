"""`hearo device languages [ko] [en]`: whose spoken distress phrases the device listens for
("살려주세요", "help me"; docs/spoken.md), over ``PATCH /v1/devices/me`` (``spoken_languages``).

``hearo device languages ko en`` sets both, ``hearo device languages none`` turns spoken words
off for the device, no argument shows the setting. A change reaches its live sessions within a
second. The gateway listens only where the ``speech`` extra is installed (its ``/healthz``
says). Exit codes as ``hearo household``'s: 0 done, 1 refused input, 2 the token was refused or
a language is unknown, 4 the gateway could not be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hearo.cli_household import ApiOption, TokenOption, call
from shared.spoken.phrases import LANGUAGES, parse_languages

NONE = "none"


def device_languages_command(
    languages: Annotated[Optional[list[str]], typer.Argument(
        help=f"{', '.join(LANGUAGES)} (one or more), or '{NONE}' to listen for no spoken words; left out: show them.",
        show_default=False)] = None,
    api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None,
) -> None:
    """Show or set the languages whose spoken distress phrases the device listens for."""
    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    if not languages:
        code, body = call(api, token, "GET", "/v1/devices/me")
    else:
        try:
            wanted = [] if languages == [NONE] else list(parse_languages(languages))
        except ValueError as error:
            raise typer.BadParameter(f"{error}, or '{NONE}'") from None
        code, body = call(api, token, "PATCH", "/v1/devices/me", {"spoken_languages": wanted})
    if body is not None:
        heard = body.get("spoken_languages") or []
        typer.echo(f"spoken languages: {' '.join(heard) if heard else NONE}")
    raise typer.Exit(code)


spoken_app = typer.Typer(help="The spoken evidence source's keyword network (docs/spoken.md).")


@spoken_app.command("train")
def spoken_train_command(
    out: Annotated[Path, typer.Option(help="Weights file to write (the shipped one: shared/spoken/weights/keyword_net.pt).")],
    data_cache: Annotated[Path, typer.Option(exists=True, file_okay=False, help="The data build's cache (`hearo data build --cache`): real speech and household sound of the training side.")],
    cache: Annotated[Path, typer.Option(help="Where the synthesised corpora and the material cut from the data build are kept (resumable).")] = Path.home() / ".cache/hearo",
    steps: Annotated[int, typer.Option(min=1, help="Training steps of one batch each.")] = 3000,
    per_text: Annotated[int, typer.Option(min=1, help="Utterances synthesised per distress text (half as many per everyday sentence).")] = 80,
    threads: Annotated[int, typer.Option(min=1, help="Torch threads.")] = 2,
) -> None:
    """Train and calibrate the keyword network on synthesised speech and the data build's training side."""
    import json

    import torch

    from hearo.keyword_training import TrainConfig, train_keyword_net

    torch.set_num_threads(threads)
    try:
        notes = train_keyword_net(cache, data_cache, out, TrainConfig(steps=steps, per_text=per_text))
    except RuntimeError as exc:
        typer.echo(f"hearo spoken train: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(notes["calibration"], indent=1))
    typer.echo(f"{out}: {notes['train_utterances']} training utterances, {notes['train_seconds']} s")
