"""shared.settings: every service reads the one HEARO_ENVIRONMENT; a development secret is
refused outside development by the settings that actually read it; in development an unset
secret is generated once under HEARO_DATA_DIR, shared by every process reading that folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hearo.agency import AgencySettings
from services.alerting.settings import AgencyConfig, AlertingSettings, ChannelConfig
from services.gateway.settings import GatewaySettings
from services.inference.settings import InferenceSettings
from shared.clips import ClipStorageSettings, create_clip_store
from shared.local_secrets import KNOWN_DEVELOPMENT_VALUES
from shared.settings import ServiceSettings

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CLIP_SECRET = "a-real-clip-signing-secret"
ENROLMENT_KEY = "a-real-enrolment-key-for-registration"
PUBLIC_WEBHOOK_SECRETS = sorted(v for v in KNOWN_DEVELOPMENT_VALUES if v.startswith("whsec_"))


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("HEARO_ENVIRONMENT", "production")
    monkeypatch.setenv("HEARO_INFERENCE_TOKEN", "a-real-inference-token")  # gateway and inference need it
    return monkeypatch


def alerting_in_production() -> AlertingSettings:
    channel = ChannelConfig(kind="webhook", url="https://119.example/hook", secrets=[WEBHOOK_SECRET])
    return AlertingSettings(
        agencies={"112": AgencyConfig(name="police", channels=[channel]),
                  "119": AgencyConfig(name="fire", channels=[channel])},
        contact_webhook_secrets=[WEBHOOK_SECRET],
    )  # fmt: skip


@pytest.mark.parametrize(
    "settings_class", [GatewaySettings, InferenceSettings, AlertingSettings, ClipStorageSettings, AgencySettings]
)
def test_every_service_reads_the_shared_environment(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARO_ENVIRONMENT", "staging")
    monkeypatch.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    monkeypatch.setenv("HEARO_INFERENCE_TOKEN", "a-real-inference-token")
    monkeypatch.setenv("HEARO_GATEWAY_ENROLMENT_KEY", ENROLMENT_KEY)
    monkeypatch.setenv("HEARO_AGENCY_SECRETS", f'["{WEBHOOK_SECRET}"]')
    monkeypatch.setenv("HEARO_AGENCY_PASSWORD", "a-real-agency-password")
    monkeypatch.setenv("HEARO_ALERTING_CONTACT_WEBHOOK_SECRETS", f'["{WEBHOOK_SECRET}"]')
    monkeypatch.setenv(
        "HEARO_ALERTING_AGENCIES",
        '{"112": {"name": "p", "channels": [{"kind": "sms", "to": "+82112"}]},'
        ' "119": {"name": "f", "channels": [{"kind": "sms", "to": "+82119"}]}}',
    )
    settings = settings_class()
    assert settings.environment == "staging" and not settings.development


def test_development_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEARO_ENVIRONMENT", raising=False)
    settings = GatewaySettings()
    assert settings.environment == "development" and settings.development and settings.clips.development


def test_gateway_in_production_needs_a_clip_secret_and_refuses_the_public_one(production: pytest.MonkeyPatch) -> None:
    # The gateway serves local clip links, so it reads the clip secret: unset or public is refused.
    production.setenv("HEARO_GATEWAY_ENROLMENT_KEY", ENROLMENT_KEY)
    with pytest.raises(ValueError, match=r"HEARO_CLIPS_SECRET_KEY \(or HEARO_SECRET_KEY\) is not set"):
        GatewaySettings()
    production.setenv("HEARO_CLIPS_SECRET_KEY", "change-me-dev-only")
    with pytest.raises(ValueError, match="public development value") as refused:
        GatewaySettings()
    assert "change-me-dev-only" not in str(refused.value)  # never echoed into a log
    production.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    settings = GatewaySettings()
    assert settings.environment == "production" and settings.clips.secret_key == CLIP_SECRET


def test_alerting_in_production_needs_only_the_secrets_it_reads(production: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="HEARO_CLIPS_SECRET_KEY"):
        alerting_in_production()  # it signs the clip links it puts in reports
    production.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    assert alerting_in_production().environment == "production"  # no HEARO_ALERTING_SECRET_KEY wanted


def test_the_clip_secret_is_not_wanted_when_s3_signs_the_links(production: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="HEARO_CLIPS_SECRET_KEY"):
        ClipStorageSettings()
    assert ClipStorageSettings(s3_bucket="clips").environment == "production"


def test_the_clip_store_honours_hearo_secret_key(production: pytest.MonkeyPatch) -> None:
    # The README's deployment-wide name signs clip links; the clip-specific one wins over it.
    production.setenv("HEARO_GATEWAY_ENROLMENT_KEY", ENROLMENT_KEY)
    production.setenv("HEARO_SECRET_KEY", "deployment-wide-secret")
    assert ClipStorageSettings().secret_key == "deployment-wide-secret"
    assert GatewaySettings().clips.signing_secrets() == ["deployment-wide-secret"]
    production.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    assert ClipStorageSettings().secret_key == CLIP_SECRET


@pytest.mark.parametrize("public", sorted(KNOWN_DEVELOPMENT_VALUES))
@pytest.mark.parametrize("field", ["HEARO_SECRET_KEY", "HEARO_CLIPS_SECRET_KEY", "HEARO_CLIPS_PREVIOUS_SECRET_KEYS"])
def test_production_clips_refuse_every_known_development_value(
    production: pytest.MonkeyPatch, public: str, field: str
) -> None:
    production.setenv("HEARO_SECRET_KEY", CLIP_SECRET)
    production.setenv(field, f'["{public}"]' if field.endswith("KEYS") else public)
    with pytest.raises(ValueError, match="public development value"):
        ClipStorageSettings()
    with pytest.raises(ValueError, match="public development value"):
        ClipStorageSettings(s3_bucket="clips")  # refused even where it would sign nothing


@pytest.mark.parametrize("public", PUBLIC_WEBHOOK_SECRETS)
@pytest.mark.parametrize("where", ["agency", "contacts", "sms"])
def test_production_alerting_refuses_every_known_development_webhook_secret(
    production: pytest.MonkeyPatch, public: str, where: str
) -> None:
    production.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    channel = ChannelConfig(kind="webhook", url="https://119.example/hook",
                            secrets=[WEBHOOK_SECRET, public] if where == "agency" else [WEBHOOK_SECRET])  # fmt: skip
    fields: dict[str, object] = {
        "agencies": {"112": AgencyConfig(name="p", channels=[channel]), "119": AgencyConfig(name="f", channels=[channel])},
        "contact_webhook_secrets": [WEBHOOK_SECRET, public] if where == "contacts" else [WEBHOOK_SECRET],
        "sms_provider_secrets": [public] if where == "sms" else [],
    }
    with pytest.raises(ValueError, match="public development value") as refused:
        AlertingSettings(**fields)
    assert public not in str(refused.value)


def test_production_alerting_names_what_is_missing(production: pytest.MonkeyPatch) -> None:
    production.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    with pytest.raises(ValueError, match="HEARO_ALERTING_AGENCIES and HEARO_ALERTING_CONTACT_WEBHOOK_SECRETS"):
        AlertingSettings()


def test_development_generates_one_clip_secret_that_gateway_and_worker_share(
    data_dir_outside_the_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEARO_ENVIRONMENT", raising=False)
    gateway, worker = GatewaySettings(), AlertingSettings()
    assert gateway.clips.secret_key == ""  # nothing configured: nothing written by reading settings
    assert not (data_dir_outside_the_repo / "secrets" / "clip-signing").exists()
    (secret,) = gateway.clips.signing_secrets()
    assert worker.clips.signing_secrets() == [secret] and secret not in KNOWN_DEVELOPMENT_VALUES
    path = data_dir_outside_the_repo / "secrets" / "clip-signing"
    assert path.read_text().strip() == secret and stat.S_IMODE(path.stat().st_mode) == 0o600
    # A link the worker signs, the gateway verifies (they are separate processes under hearo run).
    link_store, serving_store = create_clip_store(worker.clips), create_clip_store(GatewaySettings().clips)
    key = "0b6f3a52-5f39-4bd4-9a6c-0c3c4d4e1a00.flac"
    query = dict(part.split("=", 1) for part in link_store.link(key, 60).split("?", 1)[1].split("&"))
    assert serving_store.verify(key, int(query["exp"]), query["sig"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [["serve", "gateway"], ["serve", "alerting"], ["agency"]])
def test_a_service_started_without_its_secrets_says_which_in_one_line(
    production: pytest.MonkeyPatch, command: list[str]
) -> None:
    from typer.testing import CliRunner

    from hearo.cli import app

    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    assert "required outside development" in result.output or "must be set" in result.output, result.output
    assert "Traceback" not in result.output
