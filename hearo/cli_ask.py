"""`hearo ask "어젯밤에 무슨 일 있었어?"`: the command; the client is :mod:`hearo.ask_client`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def ask(
    question: Annotated[str, typer.Argument(help="The question, in Korean or English.")],
    tz: Annotated[Optional[str], typer.Option(help="IANA time zone the question's times are in (default: the gateway's, Asia/Seoul).")] = None,
    api: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000",
    token: Annotated[Optional[str], typer.Option(envvar="HEARO_TOKEN", help="Device token.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answer.")] = False,
) -> None:
    """Ask what the device heard: "어젯밤에 무슨 일 있었어?", "any alarms this week?", "what woke grandma at 3am?"."""
    from hearo.ask_client import ask_command

    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    raise typer.Exit(ask_command(api, token, question, tz, json_output))
