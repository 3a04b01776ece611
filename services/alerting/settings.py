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

from pydantic import AliasChoices, BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.clips import ClipStorageSettings
from shared.db import DATABASE_URL_ENV, DEFAULT_DATABASE_URL
from shared.settings import DEFAULT_DATA_DIR, ServiceSettings

# The development webhook secret, shared with ``hearo agency``'s development default so
# that the one-command demo verifies signatures end to end. Refused outside development.
DEV_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktaGVhcm8td2ViaG9vay1zZWNyZXQ="
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

    kind: Literal["webhook", "sms"]
    url: str | None = None
    secrets: list[str] = Field(default_factory=list)
    to: str | None = None

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


def _dev_agencies() -> dict[str, AgencyConfig]:
    def local(agency_id: str, name: str) -> AgencyConfig:
        webhook = ChannelConfig(
            kind="webhook", url=f"{DEV_AGENCY_URL}/webhooks/{agency_id}", secrets=[DEV_WEBHOOK_SECRET]
        )
        return AgencyConfig(name=name, channels=[webhook])

    return {"112": local("112", "112 경찰 (local drill receiver)"), "119": local("119", "119 소방 (local drill receiver)")}


class AlertingSettings(ServiceSettings):
    """Everything the alerting worker needs; built once in ``main`` and passed down.

    Outside development it refuses the development webhook secret (and ``clips`` the
    development clip-signing secret).
    """

    model_config = SettingsConfigDict(
        env_prefix="HEARO_ALERTING_", extra="ignore", populate_by_name=True
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

    agencies: dict[str, AgencyConfig] = Field(default_factory=_dev_agencies)
    # Class key -> agency ids; a class not named here goes to its taxonomy default.
    routes: dict[str, list[str]] = Field(default_factory=dict)
    # Emergency contacts' webhooks are signed with these (they carry no secret of their own).
    contact_webhook_secrets: list[str] = Field(default_factory=lambda: [DEV_WEBHOOK_SECRET])

    # Empty in development: the drill receiver's /sms (``hearo agency``); elsewhere: no SMS.
    sms_provider_url: str = ""
    sms_provider_headers: dict[str, str] = Field(default_factory=dict)
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
    # Where an exhausted delivery is announced besides the log and the audit trail.
    ops_webhook_url: str = ""
    concurrency: int = Field(default=8, ge=1)
    # Fault injection for the chaos suite (services/alerting/faults.py): steps
    # (comma-separated) at which the worker SIGKILLs itself with this probability (the
    # first time for certain when fault_kill_first), and whether each task is published twice.
    fault_kill_at: str = ""
    fault_kill_probability: float = Field(default=1.0, ge=0, le=1)
    fault_kill_first: bool = False
    fault_duplicate_messages: bool = False

    @model_validator(mode="after")
    def _development_defaults(self) -> AlertingSettings:
        if self.development:
            if not self.sms_provider_url:
                self.sms_provider_url = f"{DEV_AGENCY_URL}/sms"
            return self
        secrets = list(self.contact_webhook_secrets)
        for agency in self.agencies.values():
            for channel in agency.channels:
                secrets.extend(channel.secrets)
        if DEV_WEBHOOK_SECRET in secrets:
            raise ValueError(
                "AlertingSettings: a webhook secret is the development default; "
                "configure real agencies (environment is not 'development')"
            )
        return self

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
