"""`hearo device profile [home|daycare]`: what the device listens for besides the nine classes,
over ``PATCH /v1/devices/me`` (``device_profile``; the owner's ``profile`` is another field).

Under ``daycare`` a child crying with adult shouting and blows raises a ``child_safety``
incident: the staff (the device's emergency contacts) are told at once, and unless someone
acknowledges it on the device within the short countdown it goes to 112 (docs/daycare.md).
Exit codes as ``hearo household``'s: 0 done, 1 refused input, 2 the token was refused, 4 the
gateway could not be reached.
"""

from __future__ import annotations

import enum
from typing import Annotated, Optional

import typer

from hearo.cli_household import ApiOption, TokenOption, call


class ProfileChoice(str, enum.Enum):
    HOME = "home"
    DAYCARE = "daycare"


def device_profile_command(
    profile: Annotated[Optional[ProfileChoice], typer.Argument(help="home, or daycare (docs/daycare.md); left out: show it.")] = None,
    api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None,
) -> None:
    """Show or set the device's profile; a change reaches its live sessions within a second."""
    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    if profile is None:
        code, body = call(api, token, "GET", "/v1/devices/me")
    else:
        code, body = call(api, token, "PATCH", "/v1/devices/me", {"device_profile": profile.value})
    if body is not None:
        typer.echo(f"profile: {body['device_profile']}")
        if profile is ProfileChoice.DAYCARE:
            typer.echo("crying with adult shouting and blows now raises a child safety alert: the device's contacts "
                       "are told first, then 112 unless someone acknowledges it (hearo incident cancel --kind handled)",
                       err=True)  # fmt: skip
    raise typer.Exit(code)
