"""A Hear-o 9-class head on the BEATs encoder, and the self-contained model file it is served from.

``hearo train --backbone beats`` writes this file; the inference service's ``beats`` model
loads it (``services.inference.models.beats.serving``). The file is a ``torch.save`` dict
that ``torch.load(weights_only=True)`` reads::

    format        "hearo.beats-head/1"
    backbone      an official-format BEATs checkpoint dict ({"cfg", "model"}) of the
                  pre-trained encoder, fine-tuned top layers included: the file needs
                  nothing else to be served
    head          {"dim", "num_classes", "dropout", "state"} (``ClassHead``)
    class_keys    the taxonomy keys in id order, as trained (checked on load)
    feature_spec  ``FeatureSpec.to_dict()`` of the windows it was trained on (checked)
    metrics       validation metrics of the kept epoch (macro-F1, per class ...)
    training      provenance: backbone checkpoint path, data, epochs, split sizes ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from services.inference.models.beats.checkpoint import beats_from_official, official_dict
from services.inference.models.beats.config import BEATsConfig
from services.inference.models.beats.model import BEATs
from shared.features.spec import BEATS_FBANK
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES

HEAD_FILE_FORMAT = "hearo.beats-head/1"


def pool_tokens(features: Tensor, token_mask: Tensor | None = None) -> Tensor:
    """Mean of ``features [B, P, D]`` over each clip's unpadded tokens -> ``[B, D]``.

    The same pooling the official AudioSet head applies (to its logits), so a linear head
    on the pooled features equals a per-token linear head with mean-pooled logits.
    """
    if token_mask is None or not bool(token_mask.any()):
        return features.mean(dim=1)
    kept = (~token_mask).unsqueeze(-1).to(features.dtype)
    return (features * kept).sum(dim=1) / kept.sum(dim=1)


class ClassHead(nn.Module):
    """Pooled encoder features ``[B, D]`` -> dropout -> Linear -> class logits ``[B, 9]``."""

    def __init__(self, dim: int, num_classes: int = NUM_CLASSES, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.num_classes = num_classes
        self.dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.linear(self.dropout(pooled))


class BEATsHeadModel(nn.Module):
    """A pre-trained BEATs encoder and a ``ClassHead``: normalised fbank windows -> 9 logits.

    ``forward(fbank [B, T, 128], padding_mask [B, T] | None) -> logits [B, 9]`` (taxonomy id
    order; softmax gives the class probabilities). ``embed`` stops before the head: the
    pooled features that head-only training caches.
    """

    def __init__(self, backbone: BEATs, head: ClassHead) -> None:
        super().__init__()
        if backbone.predictor is not None:
            raise ValueError("the backbone must be a pre-trained (feature) BEATs: use backbone_from_official")
        if head.dim != backbone.cfg.encoder_embed_dim:
            raise ValueError(f"head dim {head.dim} != encoder dim {backbone.cfg.encoder_embed_dim}")
        self.backbone = backbone
        self.head = head

    def embed(self, fbank: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Pooled encoder features ``[B, D]`` (float32)."""
        features, token_mask = self.backbone.extract_features_from_fbank(fbank, padding_mask)
        return pool_tokens(features, token_mask)

    def forward(self, fbank: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.head(self.embed(fbank, padding_mask))


def backbone_from_official(checkpoint: Any, *, source: str) -> BEATs:
    """The encoder of an official checkpoint dict as a pre-trained (feature) BEATs, in eval mode.

    A fine-tuned AudioSet checkpoint loses its ``predictor`` and ``label_dict``; everything
    else is loaded strictly, as ``load_beats`` does.
    """
    if not isinstance(checkpoint, dict) or "cfg" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"{source}: not a BEATs checkpoint (need a dict with 'cfg' and 'model')")
    cfg = replace(BEATsConfig.from_dict(checkpoint["cfg"]), finetuned_model=False)
    state = {k: v for k, v in checkpoint["model"].items() if not k.startswith("predictor.")}
    return beats_from_official({"cfg": cfg.to_dict(), "model": state}, source=source)


def is_head_file(checkpoint: Any) -> bool:
    """Whether a loaded dict is a Hear-o head file (of any version) rather than an official one."""
    return isinstance(checkpoint, dict) and str(checkpoint.get("format", "")).startswith("hearo.beats-head/")


def head_file_dict(
    model: BEATsHeadModel, *, metrics: Mapping[str, Any], training: Mapping[str, Any]
) -> dict[str, Any]:
    """``model`` with its metadata as a head-file dict (tensors float32 on the CPU)."""
    head = model.head
    return {
        "format": HEAD_FILE_FORMAT,
        "backbone": official_dict(model.backbone),
        "head": {
            "dim": head.dim,
            "num_classes": head.num_classes,
            "dropout": head.dropout_p,
            "state": {k: v.detach().to("cpu", torch.float32) for k, v in head.state_dict().items()},
        },
        "class_keys": list(CLASS_KEYS),
        "feature_spec": BEATS_FBANK.to_dict(),
        "metrics": dict(metrics),
        "training": dict(training),
    }


def save_head_file(
    model: BEATsHeadModel,
    path: str | os.PathLike[str],
    *,
    metrics: Mapping[str, Any],
    training: Mapping[str, Any],
) -> None:
    """Write ``model`` as a head file, atomically (a reader never sees half a file)."""
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(head_file_dict(model, metrics=metrics, training=training), tmp)
    os.replace(tmp, path)


def head_model_from_dict(checkpoint: Any, *, source: str) -> tuple[BEATsHeadModel, dict[str, Any]]:
    """The eval-mode model of a loaded head-file dict, and its metadata (metrics, training, ...).

    Raises ValueError for another format version, other class keys or another feature spec
    than this build's, and for weights that do not fit (strict loading).
    """
    if not is_head_file(checkpoint):
        raise ValueError(f"{source}: not a Hear-o BEATs head file")
    if checkpoint["format"] != HEAD_FILE_FORMAT:
        raise ValueError(f"{source}: head file format {checkpoint['format']!r}; this build reads {HEAD_FILE_FORMAT!r}")
    if tuple(checkpoint.get("class_keys", ())) != CLASS_KEYS:
        raise ValueError(
            f"{source}: trained for classes {checkpoint.get('class_keys')}, this build's taxonomy is {list(CLASS_KEYS)}"
        )
    if checkpoint.get("feature_spec") != BEATS_FBANK.to_dict():
        raise ValueError(f"{source}: trained on feature spec {checkpoint.get('feature_spec')}, not {BEATS_FBANK.name}")
    backbone = backbone_from_official(checkpoint["backbone"], source=f"{source} (backbone)")
    spec = checkpoint["head"]
    if int(spec["num_classes"]) != NUM_CLASSES:
        raise ValueError(f"{source}: the head has {spec['num_classes']} outputs, not {NUM_CLASSES}")
    head = ClassHead(int(spec["dim"]), int(spec["num_classes"]), float(spec["dropout"]))
    try:
        head.load_state_dict(spec["state"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: head weights do not fit: {exc}") from exc
    model = BEATsHeadModel(backbone, head).eval()
    metadata = {k: v for k, v in checkpoint.items() if k not in ("backbone", "head")}
    return model, metadata


def load_head_file(path: str | os.PathLike[str]) -> tuple[BEATsHeadModel, dict[str, Any]]:
    """``head_model_from_dict`` of the file at ``path`` (loaded onto the CPU)."""
    return head_model_from_dict(torch.load(path, map_location="cpu", weights_only=True), source=str(path))
