"""Fine-tuning BEATs for the nine Hear-o classes: ``hearo train --backbone beats``.

``run_training(TrainingConfig(...))`` trains a ``ClassHead`` (and, with ``top_layers`` N > 0,
the encoder's top N layers) on a dataset folder and writes a head file that the inference
service's ``beats`` model serves (``services.inference.models.beats.head``).

The steps: scan the dataset (``dataset.scan_dataset``), split it by source file
(``split_by_source``), cut every clip into the gateway's 2 s windows, then train with
class-weighted cross-entropy (weights ``n / (k * n_c)`` over the k classes present in
training), AdamW, validating after every epoch. With N = 0 the frozen encoder's pooled
features are computed once and cached, so an epoch only runs the head. The epoch with the
best validation score (macro-F1, ties broken by the lower loss; or the loss alone) is the
one written; training stops after ``patience`` epochs without improvement.

The run folder (default: ``OUT`` with the suffix ``.run``) holds:

- ``state.pt``: after every epoch, the trainable weights, optimizer state, epoch, best
  score and weights, the history and the split, so ``resume=True`` continues where the run
  stopped (as if it had not been interrupted: shuffling and dropout are seeded per epoch);
- ``features.pt`` (N = 0) or ``windows.f32`` + ``windows.pt`` (N > 0): the cached inputs
  (``examples``), reused while the files, hop and backbone are unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor, nn

from services.inference.models.beats.head import (
    BEATsHeadModel,
    ClassHead,
    backbone_from_official,
    save_head_file,
)
from services.inference.training.config import TrainingConfig
from services.inference.training.dataset import scan_dataset, split_by_source
from services.inference.training.examples import TrainingExamples, prepare_examples, save_atomic
from services.inference.training.metrics import classification_metrics
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES

_STATE = "state.pt"


@dataclass
class _RunState:
    """What ``state.pt`` holds: enough to continue a run after its last finished epoch."""

    identity: dict[str, Any]
    split: dict[str, list[str]]
    epoch: int = 0
    trainable: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    best_score: list[float] | None = None
    best_epoch: int = 0
    best_trainable: dict[str, Tensor] = field(default_factory=dict)
    best_metrics: dict[str, Any] = field(default_factory=dict)
    since_best: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self, entry: dict[str, Any], score: list[float], metrics: dict[str, Any], trainable: dict[str, Tensor],
        patience: int,
    ) -> bool:
        """Book one finished epoch (``entry["epoch"]``); whether ``score`` beat the best so far.

        Scores compare as lists (lexicographically: macro-F1, then minus the loss). After
        ``patience`` epochs in a row without a better score the run is marked stopped.
        """
        self.history.append(entry)
        self.epoch = entry["epoch"]
        self.trainable = trainable
        improved = self.best_score is None or score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.since_best = score, self.epoch, 0
            self.best_trainable, self.best_metrics = trainable, metrics
        else:
            self.since_best += 1
            self.stopped_early = self.since_best >= patience
        return improved


def run_training(config: TrainingConfig, console: Console | None = None) -> Path:
    """Train as ``config`` says and write the head file to ``config.out``; returns that path.

    Progress bars and one line per epoch go to ``console`` (default: stderr). Raises
    FileExistsError when the run folder already holds a run and ``resume`` is off,
    FileNotFoundError when ``resume`` is on and there is nothing to resume, ValueError for a
    dataset or checkpoint that cannot be used or a resume whose settings differ.
    """
    console = console if console is not None else Console(stderr=True)
    device = _device(config.device)
    run = config.run_folder
    state_path = run / _STATE
    state = _load_state(state_path, config) if config.resume else None
    if state is None and state_path.exists():
        raise FileExistsError(f"{run} already holds a training run; resume it or choose another run folder")
    run.mkdir(parents=True, exist_ok=True)

    scan = scan_dataset(config.data, config.layout)
    if scan.skipped:
        console.print(f"left out: {scan.skipped}")
    if state is None:
        train_clips, val_clips = split_by_source(scan.clips, config.val_fraction, config.seed)
        state = _RunState(
            config.identity(),
            {"train": sorted({c.source for c in train_clips}), "val": sorted({c.source for c in val_clips})},
        )
    elif {c.source for c in scan.clips} != set(state.split["train"]) | set(state.split["val"]):
        raise ValueError(f"{config.data}: the dataset's files changed since the run in {run} started")

    torch.manual_seed(config.seed)
    checkpoint = torch.load(config.checkpoint, map_location="cpu", weights_only=True)
    backbone = backbone_from_official(checkpoint, source=str(config.checkpoint))
    del checkpoint
    model = BEATsHeadModel(backbone, ClassHead(backbone.cfg.encoder_embed_dim, dropout=config.head_dropout))
    model.to(device)
    trainable = _set_trainable(model, config.top_layers)

    with _progress(console) as progress:
        examples = prepare_examples(
            scan.clips,
            folder=run,
            hop_frames=config.hop_frames,
            model=model,
            head_only=config.top_layers == 0,
            backbone_checkpoint=Path(config.checkpoint),
            batch_size=config.batch_size,
            device=device,
            progress=progress,
        )
    train_rows = examples.rows(state.split["train"])
    val_rows = examples.rows(state.split["val"])
    if train_rows.numel() == 0:
        raise ValueError(f"{config.data}: no training windows")
    weights = _class_weights(examples.labels[train_rows]).to(device)
    _describe(console, examples, train_rows, val_rows, state.split)

    optimizer = _optimizer(trainable, config)
    if state.trainable:
        _load_trainable(trainable, state.trainable)
        # The saved groups carry the old run's rates; a resumed run may be given new ones.
        rates = [(group["lr"], group["weight_decay"]) for group in optimizer.param_groups]
        optimizer.load_state_dict(state.optimizer)
        for group, (lr, decay) in zip(optimizer.param_groups, rates):
            group["lr"], group["weight_decay"] = lr, decay

    with _progress(console) as progress:
        while state.epoch < config.epochs and not state.stopped_early:
            epoch = state.epoch + 1
            train_loss = _train_epoch(
                model, examples, train_rows, weights, optimizer, config, epoch, device, progress
            )
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
            if val_rows.numel():
                metrics = _evaluate(model, examples, val_rows, weights, config, device)
                entry |= {"val_loss": metrics["loss"], "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"]}
                score = [metrics["macro_f1"], -metrics["loss"]] if config.monitor == "f1" else [-metrics["loss"]]
            else:
                metrics = {}
                score = [-train_loss]
            improved = state.record(entry, score, metrics, _snapshot(trainable), config.patience)
            state.optimizer = optimizer.state_dict()
            save_atomic(asdict(state), state_path)
            console.print(_epoch_line(entry, improved))
    if state.stopped_early:
        console.print(f"stopped early: no improvement in {config.patience} epochs")

    _load_trainable(trainable, state.best_trainable)
    save_head_file(
        model.cpu().eval(),
        config.out,
        metrics=state.best_metrics,
        training=_provenance(config, scan.skipped, examples, train_rows, val_rows, state),
    )
    console.print(f"wrote {config.out} (epoch {state.best_epoch} of {state.epoch})")
    return config.out


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load_state(path: Path, config: TrainingConfig) -> _RunState:
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    state = _RunState(**torch.load(path, map_location="cpu", weights_only=True))
    expected = config.identity()
    changed = {k: (state.identity.get(k), v) for k, v in expected.items() if state.identity.get(k) != v}
    if changed:
        details = "; ".join(f"{k}: run {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise ValueError(f"cannot resume {path}: settings differ ({details})")
    return state


def _set_trainable(model: BEATsHeadModel, top_layers: int) -> dict[str, nn.Parameter]:
    """Freeze the backbone except its top layers; the trainable parameters by name."""
    layers = model.backbone.encoder.layers
    if top_layers > len(layers):
        raise ValueError(f"top_layers {top_layers} > the encoder's {len(layers)} layers")
    model.backbone.requires_grad_(False)
    # Every layer holds the one relative-position table, and the frozen layers use it too.
    shared = {id(m.weight) for m in model.backbone.modules() if isinstance(m, nn.Embedding)}
    for layer in list(layers)[len(layers) - top_layers :]:
        for param in layer.parameters():
            if id(param) not in shared:
                param.requires_grad_(True)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _optimizer(trainable: dict[str, nn.Parameter], config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW: the head at ``lr``, trainable encoder layers at ``backbone_lr`` (default ``lr / 10``)."""
    head = [p for name, p in trainable.items() if name.startswith("head.")]
    encoder = [p for name, p in trainable.items() if not name.startswith("head.")]
    groups: list[dict[str, Any]] = [{"params": head, "lr": config.lr}]
    if encoder:
        groups.append({"params": encoder, "lr": config.backbone_lr or config.lr / 10})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _snapshot(params: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    return {name: p.detach().to("cpu", copy=True) for name, p in params.items()}


def _load_trainable(params: dict[str, nn.Parameter], saved: dict[str, Tensor]) -> None:
    if saved.keys() != params.keys():
        raise ValueError("the saved run's trainable parameters do not match this model")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name])


def _class_weights(labels: Tensor) -> Tensor:
    """Inverse frequency ``n / (k * n_c)`` for the k classes present; 0 for absent classes."""
    counts = torch.bincount(labels, minlength=NUM_CLASSES).float()
    present = counts > 0
    weights = torch.zeros(NUM_CLASSES)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def _logits(model: BEATsHeadModel, inputs: Tensor, head_only: bool) -> Tensor:
    return model.head(inputs) if head_only else model(inputs)


def _train_epoch(
    model: BEATsHeadModel,
    examples: TrainingExamples,
    rows: Tensor,
    weights: Tensor,
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
    epoch: int,
    device: torch.device,
    progress: Progress,
) -> float:
    """One pass over ``rows`` in a shuffled order; the mean training loss."""
    head_only = config.top_layers == 0
    # Seeded per epoch, so a resumed run shuffles and drops out exactly as an uninterrupted one.
    torch.manual_seed(config.seed * 100_003 + epoch)
    order = rows[torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(config.seed + epoch))]
    model.train()
    total, seen = 0.0, 0
    batches = list(order.split(config.batch_size))
    task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(batches), status="")
    for batch in batches:
        inputs, targets = examples.batch(batch).to(device), examples.labels[batch].to(device)
        loss = F.cross_entropy(_logits(model, inputs, head_only).float(), targets, weight=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * batch.numel()
        seen += batch.numel()
        progress.update(task, advance=1, status=f"loss {total / seen:.4f}")
    progress.remove_task(task)
    return total / seen


@torch.inference_mode()
def _evaluate(
    model: BEATsHeadModel,
    examples: TrainingExamples,
    rows: Tensor,
    weights: Tensor,
    config: TrainingConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Validation metrics of ``rows`` plus the class-weighted loss (the training criterion)."""
    model.eval()
    logits = torch.cat([
        _logits(model, examples.batch(batch).to(device), config.top_layers == 0).float().cpu()
        for batch in rows.split(config.batch_size)
    ])
    targets = examples.labels[rows]
    loss = float(F.cross_entropy(logits, targets, weight=weights.cpu()))
    return {"loss": loss, **classification_metrics(targets, logits.argmax(dim=1))}


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,  # bars vanish when done; the per-epoch lines stay
    )


def _describe(
    console: Console, examples: TrainingExamples, train_rows: Tensor, val_rows: Tensor, split: dict[str, list[str]]
) -> None:
    def counts(rows: Tensor) -> str:
        per_class = Counter(CLASS_KEYS[int(i)] for i in examples.labels[rows])
        return ", ".join(f"{k} {per_class[k]}" for k in CLASS_KEYS if per_class[k])

    console.print(f"train: {len(split['train'])} files, {train_rows.numel()} windows ({counts(train_rows)})")
    console.print(f"validation: {len(split['val'])} files, {val_rows.numel()} windows ({counts(val_rows)})")


def _epoch_line(entry: dict[str, Any], improved: bool) -> str:
    parts = [f"epoch {entry['epoch']}", f"train loss {entry['train_loss']:.4f}"]
    if "val_loss" in entry:
        parts += [
            f"val loss {entry['val_loss']:.4f}",
            f"macro-F1 {entry['macro_f1']:.3f}",
            f"acc {entry['accuracy']:.3f}",
        ]
    return " | ".join(parts) + (" *" if improved else "")


def _provenance(
    config: TrainingConfig,
    skipped: dict[str, int],
    examples: TrainingExamples,
    train_rows: Tensor,
    val_rows: Tensor,
    state: _RunState,
) -> dict[str, Any]:
    def per_class(rows: Tensor) -> dict[str, int]:
        counts = torch.bincount(examples.labels[rows], minlength=NUM_CLASSES)
        return {key: int(counts[i]) for i, key in enumerate(CLASS_KEYS)}

    return {
        "backbone_checkpoint": str(Path(config.checkpoint).resolve()),
        "data": str(Path(config.data).resolve()),
        "top_layers": config.top_layers,
        "hop_seconds": config.hop_seconds,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "monitor": config.monitor,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early,
        "train_files": len(state.split["train"]),
        "val_files": len(state.split["val"]),
        "train_windows": per_class(train_rows),
        "val_windows": per_class(val_rows),
        "left_out": dict(skipped),
        "history": list(state.history),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

