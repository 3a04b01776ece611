"""`hearo incident`: this device's incidents over the gateway's REST API (list, cancel, report now).

``IncidentClient`` wraps the routes of ``services/gateway/incidents_api.py`` with the device
token, and those of ``services/gateway/thresholds_api.py`` (what the cancels taught, the
weekly summary; their commands are :mod:`hearo.cli_learning`'s); the ``*_command`` functions
are what the ``hearo incident ...`` commands run: they print for people (or the JSON bodies,
one per line, with ``json_output``) and return the exit code. A cancel is answered truthfully: when the report has already gone out the
command says so and fails, it never pretends to have cancelled.

Exit codes: 0 done, 1 a malformed argument (incident id, time), 2 the token was refused,
3 the gateway said no (no such incident of this device; too late to cancel; the report
failed), 4 the gateway could not be reached.

Errors::

    IncidentApiError(Exception)   the gateway answered 4xx/5xx; ``status``, ``code``, ``detail``
    httpx.HTTPError               no answer (connection refused, timeout)
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.incident_state import IncidentState
from shared.taxonomy import by_key

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_AUTH = 2
EXIT_REFUSED = 3
EXIT_CONNECTION = 4


class IncidentApiError(Exception):
    """The gateway refused a request: ``code`` is its error code (``unknown_incident``,
    ``already_reported``, ``invalid_token``...), ``detail`` the whole error body."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail


class IncidentClient:
    """The device's incidents at the gateway ``api`` (``http://127.0.0.1:8000``).

    >>> with IncidentClient("http://127.0.0.1:8000", token) as incidents:
    ...     incidents.cancel("0b7e...", reason="I burnt the toast")["outcome"]
    'cancelled'

    ``client`` replaces the HTTP client (tests pass Starlette's ``TestClient``).
    """

    def __init__(self, api: str, token: str, *, timeout_s: float = 10.0, client: httpx.Client | None = None) -> None:
        self.api = api.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._client = client or httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> IncidentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cancel(
        self, incident_id: str, reason: str | None = None, kind: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        """``{outcome, incident}``: ``cancelled`` or ``already_cancelled``; IncidentApiError
        ``already_reported`` / ``report_failed`` (409) or ``unknown_incident`` (404). ``kind``:
        ``false_alarm``, ``handled`` or ``not_sure``; ``code``: a cancel code the person typed
        (the answer is the same whatever it is: docs/evidence.md)."""
        body = {"reason": reason} if kind is None else {"reason": reason, "kind": kind}
        if code is not None:
            body["code"] = code
        return self._call("POST", f"/v1/incidents/{_checked(incident_id)}/cancel", json=body)

    def confirm(self, incident_id: str) -> dict[str, Any]:
        """Report now: ``{outcome, incident}`` with ``confirmed`` or ``already_reported``."""
        return self._call("POST", f"/v1/incidents/{_checked(incident_id)}/confirm")

    def get(self, incident_id: str) -> dict[str, Any]:
        """One incident with its clip link and deliveries."""
        return self._call("GET", f"/v1/incidents/{_checked(incident_id)}")

    def list(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        class_key: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The device's incidents detected in ``[since, until)``, newest first (aware times)."""
        params: dict[str, str | int] = {"limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        if class_key is not None:
            params["class"] = class_key
        incidents: list[dict[str, Any]] = self._call("GET", "/v1/incidents", params=params)["incidents"]
        return incidents

    def thresholds(self) -> dict[str, Any]:
        """Per class the base threshold, the one in force, the ceiling and the adjustments."""
        return self._call("GET", "/v1/devices/me/thresholds")

    def undo_threshold(self, adjustment_id: int) -> dict[str, Any]:
        """``{undone, thresholds}``; IncidentApiError ``unknown_adjustment`` (404)."""
        return self._call("POST", f"/v1/devices/me/thresholds/{adjustment_id}/undo")

    def summary(self, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
        """What was heard, cancelled and changed in ``[since, until)`` (default the last 7 days)."""
        params = {key: value.isoformat() for key, value in (("since", since), ("until", until)) if value is not None}
        return self._call("GET", "/v1/devices/me/summary", params=params)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._client.request(method, self.api + path, headers=self._headers, **kwargs)
        if response.is_success:
            body: dict[str, Any] = response.json()
            return body
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        if not isinstance(detail, dict):
            detail = {"code": f"http_{response.status_code}", "message": response.text[:300]}
        raise IncidentApiError(response.status_code, str(detail.get("code")), str(detail.get("message")), detail)


def refusal_reason(answer: httpx.Response) -> str:
    """What a refused request's error body says, in one line: a 422's messages (a refused duress
    code among them: the gateway never echoes it), an error's ``message``, else the status."""
    try:
        detail = answer.json()["detail"]
    except (ValueError, KeyError):
        return f"{answer.status_code} {answer.text[:200]}"
    if isinstance(detail, list):
        return "; ".join(str(error.get("msg", "")).removeprefix("Value error, ") for error in detail)
    return str(detail.get("message", detail)) if isinstance(detail, dict) else str(detail)


def _checked(incident_id: str) -> str:
    try:
        return str(uuid.UUID(incident_id))
    except ValueError:
        raise ValueError(f"not an incident id: {incident_id!r} (a UUID, as in the detection)") from None


def parse_time(text: str) -> datetime:
    """An ISO 8601 time for ``--since``/``--until``; without a zone it is local time."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.astimezone()


def describe(incident: dict[str, Any]) -> str:
    """One line for people: class, state (with the seconds left while pending), id."""
    cls = by_key(incident["class"])
    state = incident["state"]
    if state == IncidentState.PENDING:
        state = f"pending, reported in {incident['seconds_left']:.0f} s unless cancelled"
    return f"{cls.label_en} ({cls.label_ko}): {state}; incident {incident['incident_id']}"


def cancel_command(
    api: str,
    token: str,
    incident_id: str,
    reason: str | None,
    json_output: bool = False,
    kind: str | None = None,
    code: str | None = None,
) -> int:
    """``hearo incident cancel ID``: cancel a pending report (``kind``: why; ``code``: typed)."""
    return run_call(api, token, json_output, lambda c: c.cancel(incident_id, reason, kind, code))


def confirm_command(api: str, token: str, incident_id: str, json_output: bool = False) -> int:
    """``hearo incident confirm ID``: report now, without waiting for the countdown."""
    return run_call(api, token, json_output, lambda c: c.confirm(incident_id))


def list_command(
    api: str,
    token: str,
    since: str | None = None,
    until: str | None = None,
    class_key: str | None = None,
    limit: int = 100,
    json_output: bool = False,
) -> int:
    """``hearo incident list``: the device's incidents, newest first."""
    return run_call(
        api, token, json_output,
        lambda c: c.list(
            since=parse_time(since) if since else None, until=parse_time(until) if until else None,
            class_key=class_key, limit=limit,
        ),
    )  # fmt: skip


def run_call(api: str, token: str, json_output: bool, call: Any, render: Any = None) -> int:
    """Run ``call(client)`` and print its answer (``render(answer)``, else as an incident or
    a list of them; the JSON with ``json_output``); the exit code."""
    out, err = Console(), Console(stderr=True)
    try:
        with IncidentClient(api, token) as client:
            result = call(client)
    except ValueError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return EXIT_INPUT
    except httpx.HTTPError as exc:
        err.print(Text.assemble(("error: ", "bold red"), f"cannot reach the gateway at {api}: {exc}"))
        return EXIT_CONNECTION
    except IncidentApiError as exc:
        if json_output:
            print(json.dumps(exc.detail, ensure_ascii=False))
        err.print(Text.assemble(("error: ", "bold red"), f"{exc} ({exc.code})"))
        return EXIT_AUTH if exc.status == 401 else EXIT_REFUSED
    if json_output:
        for item in result if isinstance(result, list) else [result]:
            print(json.dumps(item, ensure_ascii=False))
        return EXIT_OK
    if render is not None:
        out.print(render(result), soft_wrap=True)
    elif isinstance(result, list):
        out.print(_table(result) if result else "no incidents")
    else:
        out.print(f"{result['outcome'].replace('_', ' ')}: {describe(result['incident'])}", soft_wrap=True)
    return EXIT_OK


def _table(incidents: list[dict[str, Any]]) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("detected", "class", "state", "confidence"):
        table.add_column(column)
    table.add_column("incident", no_wrap=True, min_width=36)  # whole: it is copied into commands
    for incident in incidents:
        cls = by_key(incident["class"])
        detected = datetime.fromisoformat(incident["detected_at"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            detected, f"{cls.label_en} / {cls.label_ko}", incident["state"], f"{incident['confidence']:.2f}",
            incident["incident_id"],
        )  # fmt: skip
    return table
