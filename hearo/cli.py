"""The `hearo` command: run the system, stream audio to it, and operate it.

Heavy imports (torch, FastAPI apps) happen inside the commands so `hearo --help` stays fast;
the function-level imports here and in :mod:`hearo.cli_model` are for that, not for cycles.
The model commands (data, train, eval, thresholds) are :mod:`hearo.cli_model`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TypeVar

import typer

from hearo.cli_ask import ask
from hearo.cli_bench import bench_app
from hearo.cli_household import device_room_command, household_app
from hearo.cli_profile import device_profile_command
from hearo.cli_spoken import device_languages_command, spoken_app
from hearo.daycare_eval import daycare_eval_command
from hearo.cli_mode import device_mode_command
from hearo.cli_duress import duress_code_command
from hearo.cli_model import data_app, evaluate_command, thresholds_command, train
from hearo.cli_learning import summary_command, thresholds_command as device_thresholds_command
from hearo.cli_review import review_app
from hearo.cli_stats import stats_command
from shared.incident_state import CancelKind
from shared.gc_freeze import freeze_startup_objects

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from shared.settings import ServiceSettings

app = typer.Typer(help="Hear-o: live audio emergency detection.", no_args_is_help=True)
serve_app = typer.Typer(help="Run one service in the foreground (what `hearo run` starts).")
db_app = typer.Typer(help="Database schema.")
device_app = typer.Typer(help="Devices registered with a running gateway.")
app.add_typer(serve_app, name="serve")
app.add_typer(db_app, name="db")
app.add_typer(device_app, name="device")
app.add_typer(data_app, name="data")
incident_app = typer.Typer(help="This device's incidents: history, cancel a pending report, report now.")
app.add_typer(incident_app, name="incident")
app.add_typer(bench_app, name="bench")
app.add_typer(household_app, name="household")  # hearo/cli_household.py
app.add_typer(review_app, name="review")  # hearo/cli_review.py: the review loop (docs/review.md)
app.add_typer(spoken_app, name="spoken")  # hearo/cli_spoken.py: the keyword network


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Address the gateway listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Gateway port (REST API, /docs, /v1/stream).")] = 8000,
    inference_port: Annotated[int, typer.Option(help="Inference service port (loopback).")] = 8001,
    agency: Annotated[bool, typer.Option(help="Also start the drill agency receiver (`hearo agency`) on :8090.")] = True,
    lan: Annotated[bool, typer.Option(help="Serve the web app to phones and tablets on this network: every interface, HTTPS with a certificate made for this machine.")] = False,
) -> None:
    """Start the whole system on embedded defaults: inference, gateway, alerting worker."""
    from hearo.supervisor import run_system

    raise typer.Exit(run_system(host=host, port=port, inference_port=inference_port, with_agency=agency, lan=lan))


def _service_logging(settings: ServiceSettings) -> None:
    # Every line (ours and uvicorn's, which is run with log_config=None so that its loggers
    # reach the root handler) in the deployment's one format (shared.log_format).
    from shared.log_format import configure_logging

    configure_logging(settings.log_format)


SettingsT = TypeVar("SettingsT", bound="BaseSettings")


def _settings(cls: type[SettingsT], command: str) -> SettingsT:
    """``cls()`` from the environment; a configuration mistake (a missing or public secret, a
    bad value) is one line naming it and exit status 2, not a traceback."""
    from pydantic import ValidationError

    try:
        return cls()
    except ValidationError as error:
        typer.echo(f"hearo {command}: " + "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors()), err=True)
        raise typer.Exit(2) from None


@serve_app.command("inference")
def serve_inference(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8001,
) -> None:
    """The inference service (model owner, micro-batcher); gateways need its token
    (HEARO_INFERENCE_TOKEN). Listens on loopback unless --host says otherwise."""
    import uvicorn

    from services.inference.app import create_app
    from services.inference.settings import InferenceSettings

    settings = _settings(InferenceSettings, "serve inference")
    _service_logging(settings)
    app = create_app(settings)
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="info", log_config=None)


@serve_app.command("gateway")
def serve_gateway(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    ssl_certfile: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Serve HTTPS with this certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="The certificate's private key (PEM).")] = None,
) -> None:
    """The gateway (REST API and the /v1/stream WebSocket)."""
    import uvicorn

    from services.gateway.app import create_app
    from services.gateway.settings import GatewaySettings

    settings = _settings(GatewaySettings, "serve gateway")
    _service_logging(settings)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("give --ssl-certfile and --ssl-keyfile together")
    app = create_app(settings)
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="info", log_config=None, ws_max_size=1 << 20,
                ssl_certfile=None if ssl_certfile is None else str(ssl_certfile),
                ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile))


@serve_app.command("alerting")
def serve_alerting() -> None:
    """The alerting worker: confirmation timer (sweeper), dispatch, contact notices."""
    from services.alerting.settings import AlertingSettings
    from services.alerting.worker import run_worker

    settings = _settings(AlertingSettings, "serve alerting")
    raise typer.Exit(run_worker(settings, loglevel=settings.log_level))


@app.command()
def agency(
    host: Annotated[Optional[str], typer.Option(help="Listen address (default: HEARO_AGENCY_HOST or 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: HEARO_AGENCY_PORT or 8090).")] = None,
) -> None:
    """A receiving agency for demos and drills: verifies signatures, shows reports on a page
    behind a login (in development a generated password, printed at start)."""
    from hearo.agency import AgencySettings, serve_agency

    settings = _settings(AgencySettings, "agency")
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    _service_logging(settings)
    serve_agency(settings.model_copy(update=overrides))


@db_app.command("upgrade")
def db_upgrade(
    url: Annotated[Optional[str], typer.Option(help="Database URL (default: from settings).")] = None,
) -> None:
    """Apply the Alembic migrations up to head."""
    from shared.db import database_url_from_env, upgrade_database

    upgrade_database(url or database_url_from_env())
    typer.echo("database is at the latest revision")


@app.command()
def stream(
    file: Annotated[Optional[Path], typer.Argument(help="WAV/FLAC/OGG file to stream.", exists=True, dir_okay=False)] = None,
    mic: Annotated[bool, typer.Option("--mic", help="Stream the microphone (needs the 'mic' extra).")] = False,
    url: Annotated[str, typer.Option(help="Gateway WebSocket URL.")] = "ws://127.0.0.1:8000/v1/stream",
    token: Annotated[Optional[str], typer.Option(envvar="HEARO_TOKEN", help="Device token.")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Send as fast as the server allows.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print server messages as JSON lines.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="After the audio, stay until a pending incident is reported or cancelled (Ctrl-C leaves; leaving never cancels).")] = True,
) -> None:
    """Stream a recording or the microphone and show what Hear-o hears."""
    from hearo.stream_client import run_stream

    if (file is None) == (not mic):
        raise typer.BadParameter("give exactly one of FILE or --mic")
    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    raise typer.Exit(run_stream(source=file, mic=mic, url=url, token=token, fast=fast, json_output=json_output, wait=wait))


@device_app.command("register")
def device_register(
    name: Annotated[str, typer.Option(help="The protected person's name.")],
    birth_year: Annotated[int, typer.Option(help="Their birth year.")],
    medical_notes: Annotated[Optional[str], typer.Option(help="Conditions, medication, allergies.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Street address for responders.")] = None,
    lat: Annotated[Optional[float], typer.Option(help="Latitude (WGS 84).")] = None,
    lon: Annotated[Optional[float], typer.Option(help="Longitude (WGS 84).")] = None,
    accuracy_m: Annotated[float, typer.Option(help="Location accuracy in metres.")] = 50.0,
    share_profile: Annotated[bool, typer.Option(help="Consent to share the profile with agencies.")] = True,
    api: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000",
    enrolment_key: Annotated[Optional[str], typer.Option(envvar="HEARO_ENROLMENT_KEY", help="The deployment's enrolment key (required by a gateway outside development).")] = None,
) -> None:
    """Register a device (consenting to recording) and print its token once."""
    import httpx

    body: dict[str, object] = {
        "profile": {"name": name, "birth_year": birth_year, "medical_notes": medical_notes},
        "address": address,
        "consent_recording": True,
        "consent_location": lat is not None and lon is not None,
        "consent_share_profile": share_profile,
    }
    if lat is not None and lon is not None:
        body["location"] = {"latitude": lat, "longitude": lon, "accuracy_m": accuracy_m}
    try:
        headers = {"X-Hearo-Enrolment-Key": enrolment_key} if enrolment_key else {}
        response = httpx.post(f"{api.rstrip('/')}/v1/devices", json=body, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the gateway at {api}: {exc}", err=True)
        raise typer.Exit(4) from None
    if response.status_code != 201:
        typer.echo(f"registration refused ({response.status_code}): {response.text}", err=True)
        raise typer.Exit(2)
    credentials = response.json()
    typer.echo(f"device_id: {credentials['device_id']}")
    typer.echo(f"token: {credentials['token']}")
    typer.echo("Keep the token: it is shown only once (export HEARO_TOKEN=...).", err=True)


# Registered here, not at the top, so `hearo --help` lists the commands in the order it always has.
app.command()(train)
app.command("eval")(evaluate_command)
app.command("daycare-eval")(daycare_eval_command)  # hearo/daycare_eval.py: the daycare rule on composed scenes
app.command("thresholds")(thresholds_command)
app.command("stats")(stats_command)
app.command("ask")(ask)  # hearo/cli_ask.py: questions over the device's history
device_app.command("room")(device_room_command)  # hearo/cli_household.py: where the device listens
device_app.command("profile")(device_profile_command)  # hearo/cli_profile.py: home or daycare
device_app.command("languages")(device_languages_command)  # hearo/cli_spoken.py: spoken words, ko en
device_app.command("mode")(device_mode_command)  # hearo/cli_mode.py: standard, away or alone
device_app.command("duress-code")(duress_code_command)  # hearo/cli_duress.py
# hearo/cli_learning.py: what the device's cancels taught, and its weekly summary
device_app.command("thresholds")(device_thresholds_command)
device_app.command("summary")(summary_command)


ApiOption = Annotated[str, typer.Option(help="Gateway base URL.")]
TokenOption = Annotated[Optional[str], typer.Option(envvar="HEARO_TOKEN", help="Device token.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answers, one per line.")]


def _token(token: Optional[str]) -> str:
    if not token:
        raise typer.BadParameter("a device token is required (--token or HEARO_TOKEN)")
    return token


@incident_app.command("list")
def incident_list(
    since: Annotated[Optional[str], typer.Option(help="Detected at or after (ISO 8601; local time without a zone).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Detected before (ISO 8601).")] = None,
    class_key: Annotated[Optional[str], typer.Option("--class", help="Only this class (fire, crime, ...).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """The device's incidents, newest first."""
    from hearo.incident_client import list_command

    raise typer.Exit(list_command(api, _token(token), since, until, class_key, limit, json_output))


@incident_app.command("cancel")
def incident_cancel(
    incident_id: Annotated[str, typer.Argument(help="The incident id (from the detection).")],
    reason: Annotated[Optional[str], typer.Option(help="Why, in your words.")] = None,
    kind: Annotated[Optional[CancelKind], typer.Option(help="false_alarm (similar false alarms teach this home's threshold), handled or not_sure.")] = None,
    code: Annotated[bool, typer.Option("--code", help="Ask for a cancel code (hidden) and send it with the cancel.")] = False,
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Cancel a pending report. Says so truthfully if it has already gone out."""
    from hearo.incident_client import cancel_command

    typed = typer.prompt("Code", hide_input=True) if code else None  # never on the command line
    raise typer.Exit(
        cancel_command(api, _token(token), incident_id, reason, json_output, kind.value if kind else None, typed)
    )


@incident_app.command("confirm")
def incident_confirm(
    incident_id: Annotated[str, typer.Argument(help="The incident id (from the detection).")],
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Report now, without waiting for the countdown."""
    from hearo.incident_client import confirm_command

    raise typer.Exit(confirm_command(api, _token(token), incident_id, json_output))
