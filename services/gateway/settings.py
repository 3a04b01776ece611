"""Gateway configuration, read from ``HEARO_GATEWAY_*`` environment variables."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.clips import ClipStorageSettings
from shared.db import DATABASE_URL_ENV, DEFAULT_DATABASE_URL
from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Everything the gateway needs; built once in ``create_app`` and passed down.

    ``database_url`` is shared with the other services and so is read from
    ``HEARO_DATABASE_URL`` or plain ``DATABASE_URL`` (first found wins), not from a
    gateway-prefixed name; so are ``redis_url`` (``HEARO_REDIS_URL``) and the clip
    storage (``HEARO_CLIPS_*``, which the alerting worker reads too).
    """

    model_config = SettingsConfigDict(
        env_prefix="HEARO_GATEWAY_", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=DATABASE_URL_ENV)
    migrate_on_start: bool = False  # run the Alembic migrations in the app's startup
    # Redis pub/sub for incident updates from the alerting workers; empty: in-process (embedded).
    redis_url: str = Field(default="", validation_alias=AliasChoices("HEARO_GATEWAY_REDIS_URL", "HEARO_REDIS_URL"))
    clips: ClipStorageSettings = Field(default_factory=lambda: ClipStorageSettings())

    # Inference service (one shared connection per gateway process).
    inference_url: str = "ws://127.0.0.1:8001/v1/windows"
    # None (the default): the served model's spec, taken from the inference handshake. A name
    # pins it: a service serving a model of another spec is then refused at connect.
    feature_spec: str | None = None
    inference_model: str | None = None  # None: whatever model the service serves
    inference_timeout_s: float = Field(default=5.0, gt=0.0)

    # Streaming sessions (/v1/stream); see docs/protocol.md for what each bound does.
    max_sessions: int = Field(default=200, ge=1)
    max_frame_bytes: int = Field(default=65_536, ge=1_024)
    start_timeout_s: float = Field(default=10.0, gt=0.0)
    hop_s: float = Field(default=0.5, gt=0.0)
    window_queue_size: int = Field(default=16, ge=1)
    max_stream_speed: float = Field(default=10.0, ge=1.0)  # audio seconds per wall second
    scores_per_second: float = Field(default=2.0, ge=0.0)  # 0: no scores messages
    ring_buffer_s: float = Field(default=40.0, ge=30.0)

    # Detector: thresholds per emergency class key, e.g. HEARO_GATEWAY_DETECTOR_THRESHOLDS='{"fire": 0.4}'.
    # A class not set here takes the served model's stored threshold, else the default one.
    detector_default_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    detector_thresholds: dict[str, float] = Field(default_factory=dict)
    detector_smoothing_windows: int = Field(default=3, ge=1)
    detector_release_ratio: float = Field(default=0.6, gt=0.0, le=1.0)
    detector_refractory_s: float = Field(default=30.0, ge=0.0)
    # The standard alarm rhythms (temporal-three: fire, temporal-four: gas) heard by signal
    # processing beside the model; their matches go through the same detector.
    alarm_patterns: bool = True

    # Incidents (docs/incidents.md): the countdown a detection opens before the report goes
    # out; how often a followed incident is re-read from the database (the backstop of the
    # pushed updates); how long a session stays open after ``stop`` to show its incidents'
    # outcome.
    incident_countdown_s: float = Field(default=60.0, ge=0.0)
    incident_poll_interval_s: float = Field(default=1.0, gt=0.0)
    incident_follow_s: float = Field(default=300.0, ge=0.0)
