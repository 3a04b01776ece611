"""Settings helpers shared by every service's pydantic-settings class."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where the embedded default keeps its SQLite file, clips and broker folders.
DEFAULT_DATA_DIR = Path("var")

DEVELOPMENT = "development"


class ServiceSettings(BaseSettings):
    """Base for each service's settings: an env prefix per service, one environment for all.

    Subclasses set ``model_config = SettingsConfigDict(env_prefix="HEARO_GATEWAY_")`` and so
    on. ``environment`` is the deployment's, so every service reads it from the one
    ``HEARO_ENVIRONMENT`` whatever its prefix. Anything but ``development`` is production
    to the checks: a setting with a development default that must not reach production
    (a secret) is refused by the settings class that reads it, when not :attr:`development`.
    """

    model_config = SettingsConfigDict(env_prefix="HEARO_", extra="ignore", populate_by_name=True)

    environment: str = Field(default=DEVELOPMENT, validation_alias="HEARO_ENVIRONMENT")

    @property
    def development(self) -> bool:
        return self.environment == DEVELOPMENT


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token (device tokens, webhook ids)."""
    return secrets.token_urlsafe(nbytes)
