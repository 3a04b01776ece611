"""Gateway configuration, read from ``HEARO_GATEWAY_*`` environment variables."""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.clips import ClipStorageSettings
from services.gateway.novelty_gate import GatePolicy
from services.gateway.rate_limit import RateLimit
from services.gateway.session_spoken import SpokenPolicy
from shared.anomaly.policy import AnomalyPolicy
from shared.daycare import DaycarePolicy
from shared.db import DATABASE_URL_ENV, DEFAULT_DATABASE_URL
from shared.household.corroboration import CorroborationPolicy
from shared.incidents import SAME_EVENT_S, WRITE_RETRY_S
from shared.incidents.evidence import EvidencePolicy
from shared.incidents.threshold_learning import LearningPolicy
from shared.inference_wire import INFERENCE_TOKEN_SECRET
from shared.local_secrets import is_development_value
from shared.settings import CommaSeparated, ServiceSettings

# Long enough that guessing is hopeless within the registration rate limit.
MIN_ENROLMENT_KEY_LENGTH = 16


class GatewaySettings(ServiceSettings):
    """Everything the gateway needs; built once in ``create_app`` and passed down.

    ``database_url`` is shared with the other services and so is read from
    ``HEARO_DATABASE_URL`` or plain ``DATABASE_URL`` (first found wins), not from a
    gateway-prefixed name; so are ``redis_url`` (``HEARO_REDIS_URL``) and the clip
    storage (``HEARO_CLIPS_*``, which the alerting worker reads too).
    """

    model_config = SettingsConfigDict(
        # "null" in a variable is None: how a rate limit is turned off.
        env_prefix="HEARO_GATEWAY_", extra="ignore", populate_by_name=True, env_parse_none_str="null"
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
    # Sent to the inference service as Authorization: Bearer; the one HEARO_INFERENCE_TOKEN both
    # services read, or a gateway's own (a gateway moves to a new token during a rotation).
    # Required outside development; in development an unset one is the generated shared secret.
    inference_token: str = Field(
        default="",
        validation_alias=AliasChoices("HEARO_GATEWAY_INFERENCE_TOKEN", "HEARO_INFERENCE_TOKEN", "inference_token"),
    )

    # Streaming sessions (/v1/stream); see docs/protocol.md for what each bound does.
    max_sessions: int = Field(default=200, ge=1)
    # Sessions of one device at once: a new one beyond it replaces the device's oldest (4409),
    # so no device can take the slots of others.
    max_sessions_per_device: int = Field(default=2, ge=1)
    # A session that sends no audio for this long is closed (4408): a silent socket holds a slot.
    idle_timeout_s: float = Field(default=30.0, gt=0.0)
    # How often the open sessions' tokens are checked against the database: the backstop of the
    # revocation events (a rotated or deleted token's sessions close within this, at worst).
    token_check_interval_s: float = Field(default=5.0, gt=0.0)
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
    # The novelty gate in front of the model (services/gateway/novelty_gate.py): a window of
    # steady sound the model just called normal is not sent again; its scores are the last
    # ones. On the held-out clips and the 3 h household track it changed no decision and kept
    # 37 % of the household windows from the model (docs/performance.md).
    # HEARO_GATEWAY_NOVELTY_GATE='{"enabled": false}' sends every window.
    novelty_gate: GatePolicy = Field(default_factory=GatePolicy)

    # Incidents (docs/incidents.md): the countdown a detection opens before the report goes
    # out; how long after a dispatched report's last detection the same class is the same
    # event going on (evidence for the report, not a second report; 0: off); how often a
    # followed incident is re-read from the database (the backstop of the pushed updates); how
    # long a session stays open after ``stop`` to show its incidents' outcome.
    incident_countdown_s: float = Field(default=60.0, ge=0.0)
    incident_same_event_s: float = Field(default=SAME_EVENT_S, ge=0.0)
    # How long a detection's write is tried again while the database cannot be reached
    # (services/gateway/session_incidents.py); 0: not at all.
    incident_write_retry_s: float = Field(default=WRITE_RETRY_S, ge=0.0)
    incident_poll_interval_s: float = Field(default=1.0, gt=0.0)
    incident_follow_s: float = Field(default=300.0, ge=0.0)
    # What a session does with what it hears during a countdown (docs/evidence.md): the batch
    # interval, when evidence counts as faded, and which classes' growing evidence shortens the
    # countdown, e.g. HEARO_GATEWAY_EVIDENCE='{"shortening": {}}' turns shortening off.
    evidence: EvidencePolicy = Field(default_factory=EvidencePolicy)
    # What a home's false-alarm cancels teach its thresholds (docs/evidence.md): how many similar
    # ones make a step, how big, and the bound per class, e.g.
    # HEARO_GATEWAY_THRESHOLD_LEARNING='{"enabled": false}' turns learning off.
    threshold_learning: LearningPolicy = Field(default_factory=LearningPolicy)
    # How the devices of one household corroborate each other's detections (docs/evidence.md):
    # the span compared, the wait before judging, what counts as the same class or a loud
    # sound, e.g. HEARO_GATEWAY_HOUSEHOLD='{"span_s": 3, "settle_s": 4}'. Whether corroboration
    # shortens a countdown is the evidence policy's ``shortening`` rule (``corroborated``).
    household: CorroborationPolicy = Field(default_factory=CorroborationPolicy)
    # The daycare profile's rule and its incidents' countdown (docs/daycare.md), for devices
    # whose profile is daycare, e.g. HEARO_GATEWAY_DAYCARE='{"span_s": 10, "countdown_s": 30}'.
    daycare: DaycarePolicy = Field(default_factory=DaycarePolicy)
    # Away and alone modes (docs/anomaly.md): learning each home's sound, judging it, activity;
    # e.g. HEARO_GATEWAY_ANOMALY='{"enabled": false}'. The alerting worker reads the same policy.
    anomaly: AnomalyPolicy = Field(default_factory=AnomalyPolicy)
    # Spoken distress words (docs/spoken.md), where their recogniser can run and the
    # device's spoken_languages are not empty: the recogniser threads shared by the sessions and
    # each session's backlog, e.g. HEARO_GATEWAY_SPOKEN='{"workers": 4}' or '{"enabled": false}'.
    spoken: SpokenPolicy = Field(default_factory=SpokenPolicy)

    # REST rate limits, token buckets per client address and per device token (JSON, e.g.
    # HEARO_GATEWAY_REST_PER_IP='{"burst": 120, "per_minute": 600}'; null turns one off).
    rest_per_ip: RateLimit | None = RateLimit(burst=120, per_minute=600)
    rest_per_device: RateLimit | None = RateLimit(burst=60, per_minute=120)
    registration_per_ip: RateLimit | None = RateLimit(burst=10, per_minute=1)
    # Joining a household by its code, per client address (the code is never guessable; this
    # keeps anyone from trying).
    household_join_per_ip: RateLimit | None = RateLimit(burst=10, per_minute=1)
    # Registration needs one of these keys in the X-Hearo-Enrolment-Key header; several
    # (comma-separated) while one is being replaced. Required outside development.
    enrolment_keys: CommaSeparated = Field(
        default_factory=list, validation_alias=AliasChoices("HEARO_GATEWAY_ENROLMENT_KEY", "enrolment_keys")
    )

    # The review loop (docs/review.md): the bearer token of the reviewer page and its routes
    # (/v1/review/...); empty: review is off (403). At least MIN_ENROLMENT_KEY_LENGTH characters.
    reviewer_token: str = Field(default="", repr=False)

    @model_validator(mode="after")
    def _reviewer_token(self) -> GatewaySettings:
        if self.reviewer_token and len(self.reviewer_token) < MIN_ENROLMENT_KEY_LENGTH:
            raise ValueError(f"HEARO_GATEWAY_REVIEWER_TOKEN must be at least {MIN_ENROLMENT_KEY_LENGTH} characters")
        if self.reviewer_token and not self.development and is_development_value(self.reviewer_token):
            raise ValueError("HEARO_GATEWAY_REVIEWER_TOKEN holds a public development value")
        return self

    @model_validator(mode="after")
    def _inference_token_outside_development(self) -> GatewaySettings:
        if self.development:
            return self
        if not self.inference_token:
            raise ValueError(
                "HEARO_GATEWAY_INFERENCE_TOKEN (or HEARO_INFERENCE_TOKEN) is required outside development: "
                "the inference service refuses a gateway without its token"
            )
        if is_development_value(self.inference_token):
            raise ValueError("HEARO_GATEWAY_INFERENCE_TOKEN (or HEARO_INFERENCE_TOKEN) holds a public development value")
        return self

    def inference_credential(self) -> str:
        """The token sent to inference: ``inference_token``, in development else the generated one
        that the inference service of ``hearo run`` reads too."""
        return self.inference_token or self.local_secret(INFERENCE_TOKEN_SECRET)

    @model_validator(mode="after")
    def _enrolment_outside_development(self) -> GatewaySettings:
        for key in self.enrolment_keys:
            if len(key) < MIN_ENROLMENT_KEY_LENGTH:
                raise ValueError(f"an enrolment key must be at least {MIN_ENROLMENT_KEY_LENGTH} characters")
            if not self.development and is_development_value(key):
                raise ValueError("HEARO_GATEWAY_ENROLMENT_KEY holds a public development value")
        if not self.development and not self.enrolment_keys:
            raise ValueError(
                "HEARO_GATEWAY_ENROLMENT_KEY is required outside development: without it anyone "
                "who can reach the gateway can register devices"
            )
        return self
