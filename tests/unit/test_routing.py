"""Class -> agencies -> ordered channels."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from services.alerting.routing import PlannedDelivery, Router, RoutingError, reported_classes
from services.alerting.settings import AgencyConfig, AlertingSettings, ChannelConfig

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def agency(name: str, *kinds: str) -> AgencyConfig:
    channels = [
        ChannelConfig(kind="webhook", url=f"https://{name}/hook", secrets=[SECRET]) if k == "webhook"
        else ChannelConfig(kind="sms", to="+82212345678")
        for k in kinds
    ]
    return AgencyConfig(name=name, channels=channels)


AGENCIES = {"112": agency("police", "webhook", "sms"), "119": agency("fire", "webhook"), "gas-co": agency("gas", "sms")}


def test_taxonomy_defaults() -> None:
    router = Router(AGENCIES, {})
    assert router.agencies_for("crime") == ("112",)
    for key in ("trapped", "electric", "gas", "fire", "medical", "accident", "help"):
        assert router.agencies_for(key) == ("119",)
    with pytest.raises(KeyError):
        router.agencies_for("normal")


def test_an_incident_of_several_classes_reaches_each_agency_once_its_own_class_first() -> None:
    router = Router(AGENCIES, {"gas": ["119", "gas-co"]})
    assert router.agencies_for("help", "crime", "gas") == ("119", "112", "gas-co")
    assert router.plan("crime", "fire", "help") == [
        PlannedDelivery("112", 0, "webhook"), PlannedDelivery("112", 1, "sms"), PlannedDelivery("119", 0, "webhook"),
    ]
    with pytest.raises(KeyError, match="normal"):
        router.agencies_for("fire", "normal")
    incident = SimpleNamespace(class_key="help", also_detected=["crime"], duress_at=None)
    assert reported_classes(incident) == ("help", "crime")
    incident.duress_at = datetime.now(UTC)  # under duress: where a crime goes, whatever was heard
    incident.class_key, incident.also_detected = "help", ["fire"]
    assert reported_classes(incident) == ("crime",)


def test_override_with_several_agencies_and_ordered_channels() -> None:
    router = Router(AGENCIES, {"gas": ["119", "gas-co", "119"], "crime": ["112"]})
    assert router.agencies_for("gas") == ("119", "gas-co")
    assert router.plan("crime") == [PlannedDelivery("112", 0, "webhook"), PlannedDelivery("112", 1, "sms")]
    assert router.plan("gas") == [PlannedDelivery("119", 0, "webhook"), PlannedDelivery("gas-co", 0, "sms")]
    assert router.channel("112", 1) == AGENCIES["112"].channels[1]
    assert router.channel("112", 2) is None and router.channel("nope", 0) is None


@pytest.mark.parametrize(
    ("agencies", "routes", "message"),
    [
        (AGENCIES, {"smoke": ["119"]}, "unknown class"),
        (AGENCIES, {"fire": ["999"]}, "does not configure"),
        (AGENCIES, {"fire": []}, "no agency"),
        ({"119": AGENCIES["119"]}, {}, "'112'"),
    ],
)
def test_misconfiguration_is_refused_up_front(agencies, routes, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RoutingError, match=message):
        Router(agencies, routes)


def test_routes_and_agencies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HEARO_ALERTING_AGENCIES",
        '{"112": {"name": "p", "channels": [{"kind": "sms", "to": "+82112"}]},'
        ' "119": {"name": "f", "channels": [{"kind": "webhook", "url": "https://f/h", "secrets": ["%s"]}]}}' % SECRET,
    )
    monkeypatch.setenv("HEARO_ALERTING_ROUTES", '{"help": ["112", "119"]}')
    settings = AlertingSettings()
    router = Router(settings.agencies, settings.routes)
    assert router.agencies_for("help") == ("112", "119")


def test_channels_must_be_complete() -> None:
    with pytest.raises(ValueError):
        ChannelConfig(kind="webhook", url="https://x")
    with pytest.raises(ValueError):
        ChannelConfig(kind="sms")


def test_contact_webhook_secrets_required_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="HEARO_ALERTING_CONTACT_WEBHOOK_SECRETS must be set"):
        AlertingSettings(environment="production", agencies=AGENCIES)
    settings = AlertingSettings(environment="production", agencies=AGENCIES, contact_webhook_secrets=[SECRET])
    assert settings.environment == "production"
