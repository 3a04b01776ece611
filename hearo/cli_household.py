"""`hearo household create|join|show|leave` and `hearo device room`: the devices of one home,
which corroborate each other's detections (docs/evidence.md), over the gateway's REST API
(``services/gateway/households_api.py``; the room through ``PATCH /v1/devices/me``).

Exit codes (as ``hearo incident``'s): 0 done, 1 refused input (a blank name or room), 2 the
token was refused, 3 the gateway said no (no such join code, already in a household, no
household), 4 the gateway could not be reached.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import httpx
import typer

from hearo.incident_client import EXIT_AUTH, EXIT_CONNECTION, EXIT_INPUT, EXIT_OK, EXIT_REFUSED, refusal_reason

household_app = typer.Typer(help="The devices of one home: they corroborate each other's detections.")

ApiOption = Annotated[str, typer.Option(help="Gateway base URL.")]
TokenOption = Annotated[Optional[str], typer.Option(envvar="HEARO_TOKEN", help="Device token.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answer.")]


def call(api: str, token: str, method: str, path: str, body: dict[str, Any] | None = None,
         *, client: httpx.Client | None = None) -> tuple[int, dict[str, Any] | None]:  # fmt: skip
    """``(exit code, answer body)`` of one request to the gateway; failures are printed."""
    http = client or httpx.Client(timeout=10.0)
    try:
        answer = http.request(method, f"{api.rstrip('/')}{path}", json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        typer.echo(f"cannot reach the gateway at {api}: {error}", err=True)
        return EXIT_CONNECTION, None
    finally:
        if client is None:
            http.close()
    if answer.is_success:
        data: dict[str, Any] = answer.json()
        return EXIT_OK, data
    if answer.status_code == 401:
        typer.echo("the device token was refused", err=True)
        return EXIT_AUTH, None
    typer.echo(f"refused: {refusal_reason(answer)}", err=True)
    return (EXIT_INPUT if answer.status_code == 422 else EXIT_REFUSED), None


def describe(household: dict[str, Any]) -> str:
    """The household and its devices, for people."""
    lines = [f"{household['name']} ({household['id']})"]
    for member in household["members"]:
        room = member["room"] or "no room set"
        listening = {True: ", listening now", False: "", None: ""}[member["listening"]]
        mine = "  <- this device" if member["this_device"] else ""
        lines.append(f"  {member['name']}: {room}{listening}{mine}")
    return "\n".join(lines)


@household_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What to call the home, e.g. 'Kim family'.")],
    api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None, json_output: JsonOption = False,
) -> None:
    """Create a household with this device in it, and print its join code (shown only now)."""
    code, body = call(api, _token(token), "POST", "/v1/households", {"name": name})
    if body is not None:
        typer.echo(json.dumps(body, ensure_ascii=False) if json_output else describe(body))
        if not json_output:
            typer.echo(f"join code: {body['join_code']}")
            typer.echo("On each other device of the home: hearo household join <code> (it is shown only once).", err=True)
    raise typer.Exit(code)


@household_app.command("join")
def join(
    join_code: Annotated[Optional[str], typer.Argument(help="The code `hearo household create` printed (asked for when left out).")] = None,
    api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None, json_output: JsonOption = False,
) -> None:
    """Join the household of a join code."""
    typed = join_code or typer.prompt("Join code", hide_input=True)
    code, body = call(api, _token(token), "POST", "/v1/households/join", {"join_code": typed})
    if body is not None:
        typer.echo(json.dumps(body, ensure_ascii=False) if json_output else describe(body))
    raise typer.Exit(code)


@household_app.command("show")
def show(api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None, json_output: JsonOption = False) -> None:
    """This device's household: its devices, their rooms, which are listening now."""
    code, body = call(api, _token(token), "GET", "/v1/households/me")
    if body is not None:
        typer.echo(json.dumps(body, ensure_ascii=False) if json_output else describe(body))
    raise typer.Exit(code)


@household_app.command("leave")
def leave(api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None, json_output: JsonOption = False) -> None:
    """Leave the household (the last device to leave deletes it)."""
    code, body = call(api, _token(token), "DELETE", "/v1/households/me")
    if body is not None:
        deleted = " (no device was left in it: deleted)" if body["deleted"] else ""
        typer.echo(json.dumps(body) if json_output else f"left household {body['household_id']}{deleted}")
    raise typer.Exit(code)


def device_room_command(
    room: Annotated[Optional[str], typer.Argument(help="Where the device listens, e.g. kitchen.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Forget the room.")] = False,
    api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None,
) -> None:
    """Set where in the home this device listens: a report then says where a sound was heard."""
    if (room is None) == (not clear):
        raise typer.BadParameter("give a ROOM or --clear")
    code, body = call(api, _token(token), "PATCH", "/v1/devices/me", {"room": None if clear else room})
    if body is not None:
        typer.echo(f"room: {body['room']}" if body["room"] else "room cleared")
    raise typer.Exit(code)


def _token(token: Optional[str]) -> str:
    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    return token

