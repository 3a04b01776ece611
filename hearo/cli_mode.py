"""`hearo device mode [standard|away|alone] [--inactivity 12h]`: what is abnormal in this home
besides the nine classes, over ``PATCH /v1/devices/me`` (``listening_mode``,
``inactivity_span_s``), and the anomaly model's state (docs/anomaly.md).

``away``: any loud, sudden or unusual sound; ``alone``: impacts, shouting and, with
``--inactivity``, that long without a sound of activity (``default`` restores the service's
12 h). Either goes to the device's contacts with a link to the clip, never to 112/119 unless
the nine-class detector agrees. Exit codes as ``hearo household``'s: 0 done, 1 refused input,
2 the token was refused, 4 the gateway could not be reached.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Optional

import typer

from hearo.cli_household import ApiOption, TokenOption, call

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ModeChoice(str, enum.Enum):
    STANDARD = "standard"
    AWAY = "away"
    ALONE = "alone"


def parse_span(text: str) -> int | None:
    """``12h``, ``90m``, ``3600`` or ``1.5d`` in seconds; ``default``: None (the service's)."""
    if text.strip().lower() == "default":
        return None
    match = _SPAN.fullmatch(text.strip().lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a span: write e.g. 12h, 90m, 1.5d or default")
    return round(float(match.group(1)) * _UNIT_S[match.group(2)])


def device_mode_command(
    mode: Annotated[Optional[ModeChoice], typer.Argument(help="standard, away or alone; left out: show it.")] = None,
    inactivity: Annotated[Optional[str], typer.Option(
        "--inactivity", help="Alone mode: how long without a sound of activity is a concern (12h, 90m; default)."
    )] = None,
    api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None,
) -> None:
    """Show or set the listening mode; a change reaches the device's live sessions within a second."""
    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    change: dict[str, Any] = {} if mode is None else {"listening_mode": mode.value}
    if inactivity is not None:
        change["inactivity_span_s"] = parse_span(inactivity)
    if change:
        code, body = call(api, token, "PATCH", "/v1/devices/me", change)
    else:
        code, body = call(api, token, "GET", "/v1/devices/me")
    if body is not None:
        span = body.get("inactivity_span_s")
        typer.echo(f"mode: {body['listening_mode']}  inactivity: {'default' if span is None else f'{span / 3600:g} h'}")
        state = body.get("anomaly") or {}
        if state:
            version = state.get("active_version")
            typer.echo(
                f"model: {'v' + str(version) if version else 'none yet'}; learning since "
                f"{state.get('learning_since') or 'not started'} ({state.get('learned_share', 0) * 100:.0f} % of "
                f"{state.get('learning_days')} days heard); budget {state.get('budget_per_week')} false alarm(s) a week"
            )
        if mode in (ModeChoice.AWAY, ModeChoice.ALONE) and not state.get("active_version"):
            typer.echo("the home's sound is still being learned: unusual sounds are judged once its model is trained "
                       "(inactivity is judged at once)", err=True)  # fmt: skip
    raise typer.Exit(code)
