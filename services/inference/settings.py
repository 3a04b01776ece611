"""Inference service settings (env prefix ``HEARO_INFERENCE_``)."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.inference_wire import INFERENCE_TOKEN_SECRET, MIN_TOKEN_LENGTH
from shared.local_secrets import is_development_value
from shared.settings import CommaSeparated, ServiceSettings

# CI and developers keep the CEO-provided weights in ../shared beside the clone.
SHARED_MODELS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "models"
# The embedded default model ships inside the repo (``hearo train --backbone default``), and
# so does the previous one (``small_cnn``), kept for comparison.
WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.pt"
SMALL_CNN_WEIGHTS = WEIGHTS_DIR / "small_cnn.pt"


class InferenceSettings(ServiceSettings):
    """What model to serve, where its weights are, and how to batch.

    ``max_batch`` is the most windows one batch (and one request) may hold and ``max_wait_ms``
    the longest the oldest queued window waits for a batch to fill; with ``batch_tuning`` (the
    default) the service measures its model at startup and forms smaller batches, or waits less,
    where the measured throughput curve says they pay (``services/inference/batch_tuning.py``);
    ``queue_size`` bounds the windows waiting (beyond it requests are answered ``overloaded``);
    ``torch_threads`` is the model thread's intra-op thread count (0: torch's default, one per core).
    ``beats_checkpoint`` is the file the ``beats`` model serves (no default: the official
    checkpoints cannot ship with the repo): an official AudioSet fine-tuned BEATs checkpoint
    (e.g. ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``), scored through the AudioSet
    map, or a 9-class head file written by ``hearo train --backbone beats``.
    ``default_weights`` and ``small_cnn_weights`` are the ``default`` and ``small_cnn`` models'
    files, shipped in the repo.

    ``token`` (``HEARO_INFERENCE_TOKEN``) is what a gateway must send to connect
    (``Authorization: Bearer``); ``previous_tokens`` (``HEARO_INFERENCE_PREVIOUS_TOKENS``,
    comma-separated) are still accepted while gateways move to a new one. Outside development
    the token is required; in development an unset one is generated under ``data_dir``
    (shared with the gateway, which reads the same file). ``connection_queue_size`` bounds the
    windows one gateway connection may have queued (default: half of ``queue_size``), so one
    connection cannot take the queue the others need.
    """

    model_config = SettingsConfigDict(env_prefix="HEARO_INFERENCE_", extra="ignore")

    model: str = "default"  # the gateway takes the served model's feature spec at connect
    efficientat_weights: Path = SHARED_MODELS_DIR / "efficientat_mn04_as" / "mn04_as_mAP_432.pt"
    beats_checkpoint: Path | None = None
    default_weights: Path = DEFAULT_WEIGHTS
    small_cnn_weights: Path = SMALL_CNN_WEIGHTS
    device: str = "auto"
    # 128 windows of 200 x 128 float32 make a 13 MB frame, within uvicorn's 16 MiB ws_max_size.
    max_batch: int = Field(default=32, ge=1, le=128)
    # The most a window waits for company (the batcher waits only while the rate of company can
    # fill the batch: services/inference/company.py): a tenth of the 0.5 s hop. At 80 live homes on
    # the 2-core VM the batches grew from 2-3 windows (at 8 ms) to 3-6, a fifth less inference CPU.
    max_wait_ms: float = Field(default=50.0, ge=0.0)
    batch_tuning: bool = True
    queue_size: int = Field(default=512, ge=1)
    connection_queue_size: int | None = Field(default=None, ge=1)
    top_tags: int = Field(default=5, ge=0, le=255)
    # One intra-op thread: small batches run faster so (bench/bench_inference.py on 2 cores:
    # batch 1 about twice the windows/s of two threads) and a core stays free for the sockets.
    torch_threads: int = Field(default=1, ge=0)
    hello_timeout_s: float = Field(default=10.0, gt=0.0)
    token: str = ""
    previous_tokens: CommaSeparated = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> InferenceSettings:
        if not self.max_batch <= self.client_queue_size() <= self.queue_size:
            raise ValueError(
                "HEARO_INFERENCE_CONNECTION_QUEUE_SIZE must be at least HEARO_INFERENCE_MAX_BATCH "
                f"({self.max_batch}) and at most HEARO_INFERENCE_QUEUE_SIZE ({self.queue_size})"
            )
        for token in (self.token, *self.previous_tokens):
            if token and len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(f"an inference token must be at least {MIN_TOKEN_LENGTH} characters")
            if token and not self.development and is_development_value(token):
                raise ValueError("HEARO_INFERENCE_TOKEN (or a previous token) holds a public development value")
        if not self.development and not self.token:
            raise ValueError(
                "HEARO_INFERENCE_TOKEN is required outside development: without it anyone who can "
                f"reach the inference port can use it (environment is {self.environment!r})"
            )
        return self

    def client_queue_size(self) -> int:
        """Windows one connection may have queued: ``connection_queue_size``, else half the queue."""
        if self.connection_queue_size is not None:
            return self.connection_queue_size
        return min(self.queue_size, max(self.max_batch, self.queue_size // 2))

    def accepted_tokens(self) -> list[str]:
        """The current token, then the previous ones. In development an unset current token is
        the one generated under ``data_dir`` (the gateways of ``hearo run`` read the same)."""
        return [self.token or self.local_secret(INFERENCE_TOKEN_SECRET), *self.previous_tokens]

    def torch_device(self) -> torch.device:
        """``device`` resolved: "auto" is CUDA when available, else CPU."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
