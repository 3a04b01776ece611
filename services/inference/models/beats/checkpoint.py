"""Official BEATs checkpoint files: strict loading and writing in the same format.

The format: ``torch.save`` of a dict with ``'cfg'`` (plain dict), ``'model'`` (state_dict:
252 keys fine-tuned, 250 pre-trained for the released size) and ``'label_dict'`` (class
index -> AudioSet id) in fine-tuned files. The pos conv's weight norm is stored as
``encoder.pos_conv.0.weight_g`` / ``weight_v`` and the one shared relative-position table
once per layer (``encoder.layers.{i}.self_attn.relative_attention_bias.weight``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import torch
from torch import Tensor

from services.inference.models.beats.config import BEATsConfig
from services.inference.models.beats.model import BEATs

_BIAS_COPY = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight")


def load_beats(path: str | os.PathLike[str]) -> BEATs:
    """Load an official-format BEATs checkpoint onto the CPU, in eval mode.

    Missing ``cfg`` keys take ``BEATsConfig``'s defaults and unknown ones are ignored. The
    state_dict must match the architecture the cfg describes exactly (same keys and
    shapes), and the per-layer copies of the shared relative-position table must be equal.
    Raises ValueError when any of that fails.
    """
    return beats_from_official(torch.load(path, map_location="cpu", weights_only=True), source=str(path))


def beats_from_official(checkpoint: Any, *, source: str) -> BEATs:
    """``load_beats`` for a checkpoint dict already in memory (``source`` names it in errors)."""
    if not isinstance(checkpoint, dict) or "cfg" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"{source}: not a BEATs checkpoint (need a dict with 'cfg' and 'model')")
    model = BEATs(BEATsConfig.from_dict(checkpoint["cfg"]), label_dict=checkpoint.get("label_dict"))
    state = checkpoint["model"]
    _check_state_dict(model, state, source=source)
    model.load_state_dict(state, strict=True)
    return model.eval()


def official_dict(model: BEATs, label_dict: Mapping[Any, Any] | None = None) -> dict[str, Any]:
    """``model`` as an official-format checkpoint dict (what ``save_official`` writes).

    Tensors are float32 on the CPU. ``label_dict`` defaults to the model's own; it is
    included only when there is one. Fields of the original cfg that ``BEATsConfig`` does
    not know are not kept.
    """
    labels = label_dict if label_dict is not None else model.label_dict
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    checkpoint: dict[str, Any] = {"cfg": model.cfg.to_dict(), "model": state}
    if labels is not None:
        checkpoint["label_dict"] = dict(labels)
    return checkpoint


def save_official(
    model: BEATs, path: str | os.PathLike[str], label_dict: Mapping[Any, Any] | None = None
) -> None:
    """Write ``model`` as an official-format checkpoint that ``load_beats`` (and the reference) read."""
    torch.save(official_dict(model, label_dict), path)


def _check_state_dict(model: BEATs, state: Mapping[str, Tensor], *, source: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)}, model {expected[k]}"
        for k in sorted(expected.keys() & state.keys())
        if tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_abbrev(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_abbrev(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes {_abbrev(wrong_shape)}")
    if problems:
        raise ValueError(f"{source}: state_dict does not match its cfg: " + "; ".join(problems))
    copies = sorted(
        ((int(m.group(1)), k) for k in state if (m := _BIAS_COPY.fullmatch(k))),
        key=lambda item: item[0],
    )
    if copies:
        first = state[copies[0][1]]
        differing = [layer for layer, key in copies if not torch.equal(state[key], first)]
        if differing:
            raise ValueError(
                f"{source}: the shared relative-position table differs between layers "
                f"(layers {differing} differ from layer {copies[0][0]}); the file is inconsistent"
            )


def _abbrev(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)})"
