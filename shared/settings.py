"""Settings helpers shared by every service's pydantic-settings class."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where the embedded default keeps its SQLite file, clips and broker folders.
DEFAULT_DATA_DIR = Path("var")

DEV_SECRET = "change-me-dev-only"


class ServiceSettings(BaseSettings):
    """Base for each service's settings: env prefix per service, refuses dev secrets in production.

    Subclasses set ``model_config = SettingsConfigDict(env_prefix="HEARO_GATEWAY_")`` and so on.
    Fields shared across services (environment, data dir, database URL) are read with the
    common ``HEARO_`` prefix as well, via ``validation_alias`` on the subclass when needed.
    """

    model_config = SettingsConfigDict(env_prefix="HEARO_", extra="ignore")

    environment: str = "development"
    secret_key: str = DEV_SECRET

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> "ServiceSettings":
        if self.environment != "development" and self.secret_key == DEV_SECRET:
            raise ValueError(
                f"{type(self).__name__}: secret_key is the development default; "
                "set a real secret (environment is not 'development')"
            )
        return self


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token (device tokens, webhook ids)."""
    return secrets.token_urlsafe(nbytes)
