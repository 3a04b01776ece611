"""shared.settings: every service reads the one HEARO_ENVIRONMENT; a development secret is
refused outside development by the settings that actually read it."""

from __future__ import annotations

import pytest

from hearo.agency import AgencySettings
from services.alerting.settings import AgencyConfig, AlertingSettings, ChannelConfig
from services.gateway.settings import GatewaySettings
from services.inference.settings import InferenceSettings
from shared.clips import ClipStorageSettings
from shared.settings import ServiceSettings

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CLIP_SECRET = "a-real-clip-signing-secret"
ENROLMENT_KEY = "a-real-enrolment-key-for-registration"


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("HEARO_ENVIRONMENT", "production")
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
    monkeypatch.setenv("HEARO_GATEWAY_ENROLMENT_KEY", ENROLMENT_KEY)
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


def test_gateway_in_production_refuses_the_development_clip_secret(production: pytest.MonkeyPatch) -> None:
    # The gateway serves local clip links, so it reads the clip secret: the default is refused.
    with pytest.raises(ValueError, match="HEARO_CLIPS_SECRET_KEY"):
        GatewaySettings()
    production.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    production.setenv("HEARO_GATEWAY_ENROLMENT_KEY", ENROLMENT_KEY)
    settings = GatewaySettings()
    assert settings.environment == "production" and settings.clips.secret_key == CLIP_SECRET


def test_alerting_in_production_needs_only_the_secrets_it_reads(production: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="HEARO_CLIPS_SECRET_KEY"):
        alerting_in_production()  # it signs the clip links it puts in reports
    production.setenv("HEARO_CLIPS_SECRET_KEY", CLIP_SECRET)
    assert alerting_in_production().environment == "production"  # no HEARO_ALERTING_SECRET_KEY wanted


def test_the_clip_secret_is_not_wanted_when_s3_signs_the_links(production: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="secret_key"):
        ClipStorageSettings()
    assert ClipStorageSettings(s3_bucket="clips").environment == "production"
