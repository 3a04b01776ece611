"""Settings helpers shared by every service's pydantic-settings class."""

from __future__ import annotations

import secrets
from pathlib import Path

from typing import Annotated

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.local_secrets import local_secret
from shared.log_format import LogFormat

# Where the embedded default keeps its SQLite file, clips and broker folders.
DEFAULT_DATA_DIR = Path("var")

DEVELOPMENT = "development"


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list setting written ``a,b`` in the environment (keys and tokens: current first, then the
# ones still accepted during a rotation). NoDecode: the value is not JSON.
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class ServiceSettings(BaseSettings):
    """Base for each service's settings: an env prefix per service, one environment for all.

    Subclasses set ``model_config = SettingsConfigDict(env_prefix="HEARO_GATEWAY_")`` and so
    on. ``environment`` is the deployment's, so every service reads it from the one
    ``HEARO_ENVIRONMENT`` whatever its prefix. Anything but ``development`` is production
    to the checks: a setting with a development default that must not reach production
    (a secret) is refused by the settings class that reads it, when not :attr:`development`.
    """

    # hide_input_in_errors: a refused secret must not be echoed into a log by its own error.
    model_config = SettingsConfigDict(
        env_prefix="HEARO_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    environment: str = Field(default=DEVELOPMENT, validation_alias="HEARO_ENVIRONMENT")
    # The deployment's folder for the embedded default's files (SQLite, clips, broker,
    # generated secrets): one for every service, like the environment.
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, validation_alias=AliasChoices("HEARO_DATA_DIR"))
    # Readable lines by default; JSON lines for a log pipeline (shared.log_format).
    log_format: LogFormat = Field(default="text", validation_alias="HEARO_LOG_FORMAT")

    @property
    def development(self) -> bool:
        return self.environment == DEVELOPMENT

    def local_secret(self, name: str) -> str:
        """The generated secret ``name`` under ``data_dir`` (development only; see
        :mod:`shared.local_secrets`)."""
        if not self.development:
            raise ValueError(f"{type(self).__name__}: the secret {name!r} must be configured outside development")
        return local_secret(name, self.data_dir)


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token (device tokens, webhook ids)."""
    return secrets.token_urlsafe(nbytes)
