"""`hearo ask`: a question over this device's history, answered by the gateway (``GET /v1/ask``).

:class:`HistoryClient` is :class:`~hearo.incident_client.IncidentClient` (the same token, errors
and gateway) with the question route; :func:`ask_command` prints the answer for people (or the
gateway's JSON with ``json_output``) and returns the exit code: 0 answered, 1 the question's time
could not be told (the answer says so, with examples), 2 the token was refused, 3 the gateway
refused the request (an unknown time zone), 4 the gateway could not be reached.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hearo.incident_client import (
    EXIT_AUTH,
    EXIT_CONNECTION,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_REFUSED,
    IncidentApiError,
    IncidentClient,
)


class HistoryClient(IncidentClient):
    """The device's history at the gateway ``api``.

    >>> HistoryClient("http://127.0.0.1:8000", token).ask("어젯밤에 무슨 일 있었어?")["answer"]
    '어젯밤 (11월 24일 18:00 ~ 11월 25일 06:00): 들린 일이 없었어요.'
    """

    def ask(self, question: str, tz: str | None = None) -> dict[str, Any]:
        """``{question, language, understood, range, classes, states, answer, examples, events}``."""
        params = {"q": question} if tz is None else {"q": question, "tz": tz}
        return self._call("GET", "/v1/ask", params=params)


def ask_command(
    api: str, token: str, question: str, tz: str | None = None, json_output: bool = False, *,
    client: httpx.Client | None = None,
) -> int:  # fmt: skip
    """``hearo ask "..."``; ``client`` replaces the HTTP client (tests)."""
    out, err = Console(soft_wrap=True), Console(stderr=True)
    history = HistoryClient(api, token, client=client)
    try:
        answer = history.ask(question, tz)
    except httpx.HTTPError as exc:
        err.print(Text.assemble(("error: ", "bold red"), f"cannot reach the gateway at {api}: {exc}"))
        return EXIT_CONNECTION
    except IncidentApiError as exc:
        if json_output:
            print(json.dumps(exc.detail, ensure_ascii=False))
        err.print(Text.assemble(("error: ", "bold red"), f"{exc} ({exc.code})"))
        return EXIT_AUTH if exc.status == 401 else EXIT_REFUSED
    finally:
        history.close()
    if json_output:
        print(json.dumps(answer, ensure_ascii=False))
    else:
        out.print(Text(answer["answer"], style="bold" if answer["understood"] else "yellow"))
        if answer["events"]:
            out.print(_table(answer))
    return EXIT_OK if answer["understood"] else EXIT_INPUT


def _table(answer: dict[str, Any]) -> Table:
    # Times as the answer's range states them: in the question's time zone.
    zone = datetime.fromisoformat(answer["range"]["start"]).tzinfo
    table = Table(show_header=True, header_style="bold")
    for column in ("detected", "what"):
        table.add_column(column)
    table.add_column("incident", no_wrap=True, min_width=36)  # whole: it is copied into commands
    for event in answer["events"]:
        detected = datetime.fromisoformat(event["detected_at"]).astimezone(zone)
        table.add_row(f"{detected:%Y-%m-%d %H:%M}", event["summary"], event["incident_id"])
    return table
