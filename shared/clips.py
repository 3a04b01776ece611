"""Incident clips: FLAC encoding, object storage and links that expire.

The gateway cuts a clip from its ring buffer (``CLIP_BEFORE_S`` before the detection to
``CLIP_AFTER_S`` after it) and stores it with :func:`shared.incidents.archive_clip`; the
alerting worker puts a link to it in the report. Two stores, one interface:

* :class:`LocalClipStore` (default): files under a folder; links point at the gateway's
  ``GET /v1/clips/{key}?exp=...&sig=...``, an HMAC-SHA256 token over key and expiry that
  :meth:`LocalClipStore.verify` checks against the current secret and the previous ones
  (a key rotates without breaking links already sent).
* :class:`S3ClipStore` (when ``HEARO_CLIPS_S3_BUCKET`` is set): objects in a bucket through
  boto3, encrypted at rest by the server (``HEARO_CLIPS_S3_SERVER_SIDE_ENCRYPTION``: SSE-S3
  ``AES256`` by default, or ``aws:kms`` with ``HEARO_CLIPS_S3_KMS_KEY_ID``); links are S3
  presigned GET URLs.

A clip is deleted (:meth:`ClipStore.delete`) when its incident's grace or retention runs out
or its device is erased (``services/alerting/retention.py``, ``services/gateway/privacy.py``).
"""

from __future__ import annotations

import abc
import asyncio
import base64
import hashlib
import hmac
import io
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import numpy as np
import soundfile as sf
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.local_secrets import is_development_value
from shared.settings import DEFAULT_DATA_DIR, ServiceSettings

CLIP_BEFORE_S = 10.0
CLIP_AFTER_S = 20.0
CONTENT_TYPE = "audio/flac"
# The name of the generated signing secret in development (``<data_dir>/secrets/clip-signing``).
CLIP_SIGNING_SECRET = "clip-signing"
_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.flac")


class ClipStorageSettings(ServiceSettings):
    """Where clips live and how links to them are signed; shared by gateway and alerting.

    Read from ``HEARO_CLIPS_*``. ``secret_key`` (``HEARO_CLIPS_SECRET_KEY``, or the
    deployment-wide ``HEARO_SECRET_KEY``) signs local links: the gateway that serves them
    and the worker that issues them must share it. Unset in development, it is generated
    once under ``<data_dir>/secrets/clip-signing`` (see :meth:`signing_secrets`); outside
    development it is required whenever links are local, and a known development value is
    refused. ``previous_secret_keys`` (``HEARO_CLIPS_PREVIOUS_SECRET_KEYS``, a JSON list)
    still verify during a rotation but never sign.
    """

    model_config = SettingsConfigDict(
        env_prefix="HEARO_CLIPS_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    secret_key: str = Field(default="", validation_alias=AliasChoices("HEARO_CLIPS_SECRET_KEY", "HEARO_SECRET_KEY"))
    previous_secret_keys: list[str] = Field(default_factory=list)
    dir: Path = DEFAULT_DATA_DIR / "clips"
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_prefix: str = "clips/"
    # Clips are a home's audio: every object is encrypted at rest by the server.
    s3_server_side_encryption: Literal["AES256", "aws:kms"] = "AES256"
    s3_kms_key_id: str = ""  # with aws:kms; empty: the bucket's AWS-managed key
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias=AliasChoices("HEARO_CLIPS_PUBLIC_BASE_URL", "HEARO_PUBLIC_BASE_URL"),
    )
    link_ttl_s: int = Field(default=24 * 3600, gt=0, le=7 * 24 * 3600)  # S3 presigning caps at 7 days

    @model_validator(mode="after")
    def _refuse_missing_or_public_secret(self) -> ClipStorageSettings:
        if self.development:
            return self
        if any(is_development_value(key) for key in (self.secret_key, *self.previous_secret_keys)):
            raise ValueError(
                "ClipStorageSettings: HEARO_CLIPS_SECRET_KEY (or HEARO_SECRET_KEY, or one of "
                "HEARO_CLIPS_PREVIOUS_SECRET_KEYS) is a public development value; set a real secret "
                f"(environment is {self.environment!r}, not 'development')"
            )
        # S3 links are presigned with the AWS credentials; only local links use secret_key.
        if not self.s3_bucket and not self.secret_key:
            raise ValueError(
                "ClipStorageSettings: HEARO_CLIPS_SECRET_KEY (or HEARO_SECRET_KEY) is not set; it signs "
                f"clip links and is required outside development (environment is {self.environment!r})"
            )
        return self

    def signing_secrets(self) -> list[str]:
        """The current secret, then the previous ones. In development an unset current secret
        is the one generated under ``data_dir`` (so every process of ``hearo run`` agrees)."""
        return [self.secret_key or self.local_secret(CLIP_SIGNING_SECRET), *self.previous_secret_keys]


@dataclass(frozen=True)
class EncodedClip:
    """A clip as stored: FLAC bytes with their SHA-256 (hex) and duration."""

    data: bytes
    sha256: str
    duration_s: float
    sample_rate: int


def clip_key(incident_id: uuid.UUID) -> str:
    """The storage key of an incident's clip; known before the clip exists."""
    return f"{incident_id}.flac"


def clip_incident(key: str) -> uuid.UUID | None:
    """The incident whose clip ``key`` names (:func:`clip_key` undone); None for any other string."""
    return uuid.UUID(key.removesuffix(".flac")) if _KEY.fullmatch(key) else None


def encode_flac(samples: np.ndarray, sample_rate: int) -> EncodedClip:
    """Mono float samples in [-1, 1] as 16-bit FLAC (lossless for what the gateway holds)."""
    samples = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="FLAC", subtype="PCM_16")
    data = buffer.getvalue()
    return EncodedClip(data, hashlib.sha256(data).hexdigest(), len(samples) / sample_rate, sample_rate)


def sign_clip_token(secret: str, key: str, expires_at: int) -> str:
    """The ``sig`` of a local clip link: URL-safe base64 HMAC-SHA256 of ``key`` and expiry."""
    mac = hmac.new(secret.encode(), f"{key}\n{expires_at}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def verify_clip_token(secret: str, key: str, expires_at: int, sig: str, now: float | None = None) -> bool:
    """True when ``sig`` was made by :func:`sign_clip_token` with ``secret`` and has not expired."""
    if (time.time() if now is None else now) >= expires_at:
        return False
    # As bytes: compare_digest refuses a str with non-ASCII characters (a forged link has any).
    return hmac.compare_digest(sign_clip_token(secret, key, expires_at).encode(), sig.encode())


class ClipStore(abc.ABC):
    """Stores clip bytes under a key and makes expiring links to them."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there; complete or not at all."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; FileNotFoundError when there are none."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove what is under ``key``; nothing there is not an error (deleting twice is safe)."""

    @abc.abstractmethod
    def link(self, key: str, ttl_s: int) -> str:
        """A URL that fetches ``key`` for ``ttl_s`` seconds; valid before the clip exists."""


class LocalClipStore(ClipStore):
    """Clips as files under ``root``, served by the gateway through signed links.

    Links are signed with ``secret``; :meth:`verify` also accepts ``previous_secrets``.
    """

    def __init__(self, root: Path, secret: str, public_base_url: str, previous_secrets: Sequence[str] = ()) -> None:
        self.root = Path(root)
        self.secret = secret
        self.previous_secrets = tuple(previous_secrets)
        self.public_base_url = public_base_url.rstrip("/")

    def verify(self, key: str, expires_at: int, sig: str) -> bool:
        """True when ``sig`` is an unexpired link token for ``key`` under any secret held."""
        return any(verify_clip_token(s, key, expires_at, sig) for s in (self.secret, *self.previous_secrets))

    def path_for(self, key: str) -> Path:
        """The file of ``key``; ValueError for anything that is not a clip key."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a clip key: {key!r}")
        return self.root / key

    async def put(self, key: str, data: bytes) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(_write_atomically, path, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path_for(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)

    def link(self, key: str, ttl_s: int) -> str:
        self.path_for(key)
        expires_at = int(time.time()) + ttl_s
        query = urlencode({"exp": expires_at, "sig": sign_clip_token(self.secret, key, expires_at)})
        return f"{self.public_base_url}/v1/clips/{key}?{query}"


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (the gateway serving a link) sees the old file or the new one, never half.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class S3ClipStore(ClipStore):
    """Clips as objects in an S3-compatible bucket; links are presigned GET URLs.

    Every object is written with server-side encryption ``encryption`` (``AES256`` or
    ``aws:kms``, then under ``kms_key_id`` when given): a bucket whose default is plain
    storage still gets encrypted clips.
    """

    def __init__(
        self, client: Any, bucket: str, prefix: str = "", *, encryption: str = "AES256", kms_key_id: str = ""
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._encryption: dict[str, str] = {"ServerSideEncryption": encryption}
        if encryption == "aws:kms" and kms_key_id:
            self._encryption["SSEKMSKeyId"] = kms_key_id

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=CONTENT_TYPE, **self._encryption,
        )

    async def delete(self, key: str) -> None:
        # S3 answers a delete of a missing key with 204 too; versioned buckets keep a delete marker.
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self.prefix + key)

    async def get(self, key: str) -> bytes:
        def fetch() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            except self.client.exceptions.NoSuchKey:
                raise FileNotFoundError(key) from None
            body: bytes = response["Body"].read()
            return body

        return await asyncio.to_thread(fetch)

    def link(self, key: str, ttl_s: int) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.prefix + key}, ExpiresIn=ttl_s
        )
        return url


def create_clip_store(settings: ClipStorageSettings) -> ClipStore:
    """S3 when a bucket is configured (credentials from the usual AWS variables), else local."""
    if not settings.s3_bucket:
        current, *previous = settings.signing_secrets()
        return LocalClipStore(settings.dir, current, settings.public_base_url, previous)
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}),
    )
    return S3ClipStore(
        client, settings.s3_bucket, settings.s3_prefix,
        encryption=settings.s3_server_side_encryption, kms_key_id=settings.s3_kms_key_id,
    )
