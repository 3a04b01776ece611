"""Alerting configuration, read from ``HEARO_ALERTING_*`` environment variables.

Fields every service shares come from the common names as well: the database
(``HEARO_DATABASE_URL``), the environment (``HEARO_ENVIRONMENT``), Redis
(``HEARO_REDIS_URL``, for incident updates), the data folder (``HEARO_DATA_DIR``) and the
clip storage (``HEARO_CLIPS_*``, which the gateway reads too). Structured fields take JSON::

    HEARO_ALERTING_AGENCIES='{"119": {"name": "119 종합상황실", "channels": [
        {"kind": "webhook", "url": "https://119.example/hooks", "secrets": ["whsec_..."]},
        {"kind": "sms", "to": "+82212345678"}]}}'
    HEARO_ALERTING_ROUTES='{"gas": ["119", "gas-company"]}'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.alerting.webhooks import local_webhook_secret, secret_key
from shared.anomaly.policy import AnomalyPolicy
from shared.clips import ClipStorageSettings
from shared.db import DATABASE_URL_ENV, DEFAULT_DATABASE_URL
from shared.local_secrets import is_development_value
from shared.settings import DEFAULT_DATA_DIR, ServiceSettings

# The provider body: a JSON object whose string values have $to, $sender, $subject, $text
# and $idempotency_key substituted (``hearo agency``'s /sms takes this one).
DEFAULT_SMS_TEMPLATE: dict[str, object] = {
    "to": "$to", "from": "$sender", "subject": "$subject", "text": "$text",
    "type": "LMS", "reference": "$idempotency_key",
}
# Where ``hearo agency`` listens by default.
DEV_AGENCY_URL = "http://127.0.0.1:8090"


class ChannelConfig(BaseModel):
    """One way to reach an agency: a signed webhook (``url``, ``secrets``) or an SMS (``to``).

    ``secrets`` lists the current secret first; during a rotation every listed secret
    signs, so the receiver may hold either the old or the new one.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    kind: Literal["webhook", "sms"]
    url: str | None = None
    secrets: list[str] = Field(default_factory=list)
    to: str | None = None

    @field_validator("secrets")
    @classmethod
    def _secrets_are_whsec(cls, secrets: list[str]) -> list[str]:
        return check_webhook_secrets(secrets)

    @model_validator(mode="after")
    def _complete(self) -> ChannelConfig:
        if self.kind == "webhook" and not (self.url and self.secrets):
            raise ValueError("a webhook channel needs 'url' and at least one secret")
        if self.kind == "sms" and not self.to:
            raise ValueError("an sms channel needs 'to'")
        return self


class AgencyConfig(BaseModel):
    """An agency and its channels in the order they are tried (the next is the fallback)."""

    name: str
    channels: list[ChannelConfig] = Field(min_length=1)


def check_webhook_secrets(secrets: list[str]) -> list[str]:
    """``secrets`` when each is a usable ``whsec_<base64>`` secret; ValueError naming the fault."""
    for secret in secrets:
        secret_key(secret)
    return secrets


def _drill_agencies(secret: str) -> dict[str, AgencyConfig]:
    def local(agency_id: str, name: str) -> AgencyConfig:
        webhook = ChannelConfig(kind="webhook", url=f"{DEV_AGENCY_URL}/webhooks/{agency_id}", secrets=[secret])
        return AgencyConfig(name=name, channels=[webhook])

    return {"112": local("112", "112 경찰 (local drill receiver)"), "119": local("119", "119 소방 (local drill receiver)")}


class AlertingSettings(ServiceSettings):
    """Everything the alerting worker needs; built once in ``main`` and passed down.

    In development, unset ``agencies``, ``contact_webhook_secrets`` and SMS provider are the
    drill agency's (``hearo agency``), signed with the webhook secret generated under
    ``data_dir`` (:func:`~services.alerting.webhooks.local_webhook_secret`). Outside
    development they must be configured, and a public development value is refused (as
    ``clips`` refuses one for clip links).
    """

    model_config = SettingsConfigDict(
        env_prefix="HEARO_ALERTING_", extra="ignore", populate_by_name=True,
        hide_input_in_errors=True,  # a refused value may be a secret: it must not reach the log
    )

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=DATABASE_URL_ENV)
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR, validation_alias=AliasChoices("HEARO_ALERTING_DATA_DIR", "HEARO_DATA_DIR")
    )
    # Empty: the embedded broker, kombu's filesystem transport under ``data_dir/broker``.
    broker_url: str = ""
    # Redis for incident updates to the gateways; empty: none (gateways poll the database).
    redis_url: str = Field(default="", validation_alias=AliasChoices("HEARO_ALERTING_REDIS_URL", "HEARO_REDIS_URL"))
    clips: ClipStorageSettings = Field(default_factory=lambda: ClipStorageSettings())

    agencies: dict[str, AgencyConfig] = Field(default_factory=dict)
    # Class key -> agency ids; a class not named here goes to its taxonomy default.
    routes: dict[str, list[str]] = Field(default_factory=dict)
    # Emergency contacts' webhooks are signed with these (they carry no secret of their own),
    # the current one first; during a rotation each listed secret signs.
    contact_webhook_secrets: list[str] = Field(default_factory=list)

    # Empty in development: the drill receiver's /sms (``hearo agency``); elsewhere: no SMS.
    sms_provider_url: str = ""
    sms_provider_headers: dict[str, str] = Field(default_factory=dict)
    # When set, each provider request is also signed as a Standard Webhook (webhook-* headers,
    # webhook-id = the idempotency key); the drill agency's /sms requires it. Real providers
    # authenticate with sms_provider_headers instead.
    sms_provider_secrets: list[str] = Field(default_factory=list)
    sms_sender: str = "Hear-o"
    # The JSON body posted to the provider; string values have $to, $sender, $text,
    # $subject and $idempotency_key substituted.
    sms_template: dict[str, object] = Field(default_factory=lambda: dict(DEFAULT_SMS_TEMPLATE))

    send_timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, description="per channel, before falling back")
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    # A claimed row is re-driven when its lease runs out or its worker stops heartbeating.
    lease_s: float = Field(default=30.0, gt=0)
    heartbeat_s: float = Field(default=1.0, gt=0)
    worker_stale_s: float = Field(default=4.0, gt=0)
    sweep_interval_s: float = Field(default=0.5, gt=0)
    # A due row whose task was published this long ago and has not run is published again.
    redrive_after_s: float = Field(default=3.0, gt=0)
    claim_batch: int = Field(default=200, ge=1)
    clip_wait_s: float = Field(default=3.0, ge=0)
    history_limit: int = Field(default=10, ge=0)
    # Privacy (docs/incidents.md#privacy): a cancelled incident's clip is deleted this long
    # after the cancel unless its owner donated it; every settled incident's audio, location
    # and report bodies this long after its detection (the row and audit trail stay).
    cancelled_clip_grace_s: float = Field(default=24 * 3600.0, ge=0)
    personal_data_retention_s: float = Field(default=90 * 24 * 3600.0, gt=0)
    retention_interval_s: float = Field(default=60.0, gt=0)
    # Away and alone modes (docs/anomaly.md): training the devices' models and flagging
    # inactivity (``HEARO_ALERTING_ANOMALY``, JSON; the gateway reads the same policy).
    anomaly: AnomalyPolicy = Field(default_factory=AnomalyPolicy)
    # Where an exhausted delivery is announced besides the log and the audit trail.
    ops_webhook_url: str = ""
    concurrency: int = Field(default=8, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Prometheus metrics (services/alerting/metrics.py) served on this port (0: not served),
    # the database-derived ones read every metrics_interval_s.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_interval_s: float = Field(default=1.0, gt=0)
    # Fault injection for the chaos suite (services/alerting/faults.py): steps
    # (comma-separated) at which the worker SIGKILLs itself with this probability (the
    # first time for certain when fault_kill_first), and whether each task is published twice.
    fault_kill_at: str = ""
    fault_kill_probability: float = Field(default=1.0, ge=0, le=1)
    fault_kill_first: bool = False
    fault_duplicate_messages: bool = False

    @field_validator("contact_webhook_secrets", "sms_provider_secrets")
    @classmethod
    def _secrets_are_whsec(cls, secrets: list[str]) -> list[str]:
        return check_webhook_secrets(secrets)

    @model_validator(mode="after")
    def _development_defaults(self) -> AlertingSettings:
        if self.development:
            self._report_to_the_drill_agency()
            return self
        missing = [name for name, unset in (
            ("HEARO_ALERTING_AGENCIES", not self.agencies),
            ("HEARO_ALERTING_CONTACT_WEBHOOK_SECRETS", not self.contact_webhook_secrets),
        ) if unset]  # fmt: skip
        if missing:
            raise ValueError(
                f"AlertingSettings: {' and '.join(missing)} must be set outside development "
                f"(environment is {self.environment!r})"
            )
        secrets = [*self.contact_webhook_secrets, *self.sms_provider_secrets]
        for agency in self.agencies.values():
            for channel in agency.channels:
                secrets.extend(channel.secrets)
        if any(is_development_value(secret) for secret in secrets):
            raise ValueError(
                "AlertingSettings: a webhook secret (in HEARO_ALERTING_AGENCIES, _CONTACT_WEBHOOK_SECRETS or "
                "_SMS_PROVIDER_SECRETS) is a public development value; configure real secrets "
                f"(environment is {self.environment!r}, not 'development')"
            )
        return self

    def _report_to_the_drill_agency(self) -> None:
        # Only what was left unset: a developer's own agencies or provider are kept as given.
        if self.agencies and self.contact_webhook_secrets and self.sms_provider_url:
            return
        secret = local_webhook_secret(self)
        if not self.agencies:
            self.agencies = _drill_agencies(secret)
        if not self.contact_webhook_secrets:
            self.contact_webhook_secrets = [secret]
        if not self.sms_provider_url:
            self.sms_provider_url = f"{DEV_AGENCY_URL}/sms"
            self.sms_provider_secrets = self.sms_provider_secrets or [secret]

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """The embedded broker's message folder (used only with ``filesystem://``)."""
        return self.data_dir / "broker"

    @property
    def fault_first_kill_marker(self) -> Path | None:
        return self.data_dir / "fault-first-kill" if self.fault_kill_first else None

    @property
    def fault_steps(self) -> frozenset[str]:
        return frozenset(step.strip() for step in self.fault_kill_at.split(",") if step.strip())
