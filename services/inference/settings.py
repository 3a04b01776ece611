"""Inference service settings (env prefix ``HEARO_INFERENCE_``)."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

# CI and developers keep the CEO-provided weights in ../shared beside the clone.
SHARED_MODELS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "models"
# The embedded default model ships inside the repo (``hearo train --backbone default``), and
# so does the previous one (``small_cnn``), kept for comparison.
WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.pt"
SMALL_CNN_WEIGHTS = WEIGHTS_DIR / "small_cnn.pt"


class InferenceSettings(ServiceSettings):
    """What model to serve, where its weights are, and how to batch.

    ``max_wait_ms`` bounds how long the oldest queued window waits for a batch to fill;
    ``queue_size`` bounds the windows waiting (beyond it requests are answered ``overloaded``);
    ``torch_threads`` is the model thread's intra-op thread count (0: torch's default, one per core).
    ``beats_checkpoint`` is the file the ``beats`` model serves (no default: the official
    checkpoints cannot ship with the repo): an official AudioSet fine-tuned BEATs checkpoint
    (e.g. ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``), scored through the AudioSet
    map, or a 9-class head file written by ``hearo train --backbone beats``.
    ``default_weights`` and ``small_cnn_weights`` are the ``default`` and ``small_cnn`` models'
    files, shipped in the repo.
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
    max_wait_ms: float = Field(default=8.0, ge=0.0)
    queue_size: int = Field(default=512, ge=1)
    top_tags: int = Field(default=5, ge=0, le=255)
    # One intra-op thread: small batches run faster so (bench/bench_inference.py on 2 cores:
    # batch 1 about twice the windows/s of two threads) and a core stays free for the sockets.
    torch_threads: int = Field(default=1, ge=0)
    hello_timeout_s: float = Field(default=10.0, gt=0.0)

    def torch_device(self) -> torch.device:
        """``device`` resolved: "auto" is CUDA when available, else CPU."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
