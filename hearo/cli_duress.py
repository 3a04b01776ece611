"""`hearo device duress-code`: set or remove the owner's duress code (docs/evidence.md).

The code is typed at a hidden prompt, twice, never taken from the command line (a shell's
history and ``ps`` would keep it), and sent once to ``PATCH /v1/devices/me``; the gateway keeps
only a slow hash and never shows it again, not even whether one is set.

Exit codes (as ``hearo incident``'s): 0 done, 1 a code the gateway refused (a PIN of 4 to 12
digits or a phrase of two words or more), 2 the token was refused, 4 the gateway could not be
reached.
"""

from __future__ import annotations

from typing import Annotated, Optional

import httpx
import typer

from hearo.incident_client import EXIT_AUTH, EXIT_CONNECTION, EXIT_INPUT, EXIT_OK, refusal_reason


def set_duress_code(api: str, token: str, code: str | None, *, client: httpx.Client | None = None) -> int:
    """Store ``code`` as the device's duress code (None removes it); print what happened (never
    the code) and return the exit code."""
    http = client or httpx.Client(timeout=10.0)
    try:
        answer = http.patch(
            f"{api.rstrip('/')}/v1/devices/me", json={"duress_code": code}, headers={"Authorization": f"Bearer {token}"}
        )
    except httpx.HTTPError as error:
        typer.echo(f"cannot reach the gateway at {api}: {error}", err=True)
        return EXIT_CONNECTION
    finally:
        if client is None:
            http.close()
    if answer.status_code == 200:
        typer.echo("duress code removed" if code is None else "duress code saved (it is never shown again)")
        return EXIT_OK
    if answer.status_code == 401:
        typer.echo("the device token was refused", err=True)
        return EXIT_AUTH
    typer.echo(f"refused: {refusal_reason(answer)}", err=True)
    return EXIT_INPUT


def duress_code_command(
    remove: Annotated[bool, typer.Option("--remove", help="Remove the code instead of setting one.")] = False,
    api: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000",
    token: Annotated[Optional[str], typer.Option(envvar="HEARO_TOKEN", help="Device token.")] = None,
) -> None:
    """Set the duress code (asked for twice, hidden): a cancel of a crime or help incident with it
    looks like any cancel while the police are told silently (docs/evidence.md)."""
    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    code = None if remove else typer.prompt("Duress code", hide_input=True, confirmation_prompt=True)
    raise typer.Exit(set_duress_code(api, token, code))

