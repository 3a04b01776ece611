"""The `hearo` commands that make and judge the embedded model: `hearo data ...`, `hearo
train`, `hearo eval` and `hearo thresholds`. :mod:`hearo.cli` registers them on the command.

As in :mod:`hearo.cli`, each command imports what it needs (torch, the data build) inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(help="Training data for the embedded default model.")


@data_app.command("build")
def data_build(
    out: Annotated[Path, typer.Option(help="Folder to write: audio/, manifest.csv, licences/.")],
    cache: Annotated[Path, typer.Option(help="Download and decode cache; a rerun resumes from it.")] = Path("var/data-cache"),
    packages: Annotated[Optional[str], typer.Option(help="Comma-separated allow-listed packages (default: every one with label rules, about 4.6 GB).")] = None,
    scenes_per_class: Annotated[int, typer.Option(help="Training scenes per emergency class (normal gets twice).")] = 700,
    val_fraction: Annotated[float, typer.Option(help="Share of source files held out for validation.")] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    extra: Annotated[Optional[list[Path]], typer.Option(dir_okay=False, help="A review export's manifest.csv (`hearo review export`): its reviewed clips join the train split; repeat for several.")] = None,
    extra_only: Annotated[bool, typer.Option("--extra-only", help="Only put the --extra clips into the data set already built at --out (no rebuild).")] = False,
) -> None:
    """Build the default model's data set from allow-listed Debian packages and synthesis."""
    from hearo.data import DEFAULT_PACKAGES, BuildConfig, DisallowedPackageError, build_dataset
    from hearo.data.packages import DownloadError
    from hearo.data.reviewed import add_reviewed

    if extra_only:
        if not extra:
            raise typer.BadParameter("--extra-only needs --extra", param_hint="--extra")
        try:
            count = add_reviewed(out, extra)
        except ValueError as exc:
            typer.echo(f"hearo data build: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"reviewed clips: {count}; manifest: {out / 'manifest.csv'}")
        return
    names = tuple(p.strip() for p in packages.split(",") if p.strip()) if packages else DEFAULT_PACKAGES
    config = BuildConfig(packages=names, seed=seed, scenes_per_class=scenes_per_class, val_fraction=val_fraction,
                         extra=tuple(extra or ()))
    try:
        summary = build_dataset(out, cache, config)
    except DisallowedPackageError as exc:
        typer.echo(f"hearo data build: {exc}", err=True)
        raise typer.Exit(2) from None
    except (DownloadError, ValueError) as exc:
        typer.echo(f"hearo data build: {exc}", err=True)
        raise typer.Exit(1) from None
    for split, counts in summary.scenes.items():
        typer.echo(f"{split}: {sum(counts.values())} scenes ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    typer.echo(f"sources: {dict(summary.sources)}; duplicates dropped: {summary.duplicates}")
    if extra:
        typer.echo(f"reviewed clips: {summary.reviewed}")
    typer.echo(f"manifest: {summary.manifest}")


@data_app.command("household")
def data_household(
    out: Annotated[Path, typer.Option(help="Folder to write the household audio and index.csv into.")],
    cache: Annotated[Path, typer.Option(help="The data build's cache (`hearo data build --cache`).")] = Path("var/data-cache"),
    part: Annotated[str, typer.Option(help="'evaluation' (the long-normal track), 'calibration' (hearo train --household) or 'training' (hearo train --household-train).")] = "evaluation",
    minutes: Annotated[float, typer.Option(help="Total length; files are 1 to 10 minutes.")] = 180.0,
    packages: Annotated[Optional[str], typer.Option(help="Comma-separated packages: the data build's (default: its default).")] = None,
    seed: Annotated[int, typer.Option(help="The data build's seed (it decides the split).")] = 0,
    compose_seed: Annotated[int, typer.Option(help="Seed of the composition: another gives other scenes from the same sources.")] = 0,
) -> None:
    """Compose hours of household audio with no emergency from the data build's normal sources (one part of its split)."""
    from hearo.data import DEFAULT_PACKAGES, BuildConfig
    from hearo.data.household import HouseholdConfig, build_household

    names = tuple(p.strip() for p in packages.split(",") if p.strip()) if packages else DEFAULT_PACKAGES
    try:
        rows = build_household(out, cache, HouseholdConfig(part=part, minutes=minutes, seed=compose_seed,
                                                           build=BuildConfig(packages=names, seed=seed)))
    except ValueError as exc:
        typer.echo(f"hearo data household: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{len(rows)} files, {sum(r.seconds for r in rows) / 60:.0f} minutes: {out / 'index.csv'}")


@data_app.command("hard-negatives")
def data_hard_negatives(
    household: Annotated[list[Path], typer.Option(exists=True, file_okay=False, help="Household training audio (`hearo data household --part training`); repeat for several.")],
    out: Annotated[Path, typer.Option(help="Folder for the mined 4 s clips (give it to `hearo train --household-train`); a rerun resumes.")],
    model: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The default model file that mines (usually the shipped one).")] = Path("services/inference/models/weights/default.pt"),
    min_score: Annotated[float, typer.Option(help="A window is mined when its highest emergency score reaches this.")] = 0.3,
    threads: Annotated[int, typer.Option(help="Torch threads.")] = 2,
) -> None:
    """Cut 4 s clips around the household moments a model mistakes for an emergency (hard negatives for training)."""
    import torch
    from rich.console import Console

    from services.inference.models.default import load_default_model
    from services.inference.training.hard_negatives import HardNegativeConfig, mine_hard_negatives

    torch.set_num_threads(threads)
    try:
        count = mine_hard_negatives(load_default_model(model)[0], household, out, HardNegativeConfig(min_score=min_score),
                                    Console(stderr=True))
    except ValueError as exc:
        typer.echo(f"hearo data hard-negatives: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{count} hard-negative clips: {out}")


@data_app.command("spoken")
def data_spoken(
    out: Annotated[Path, typer.Option(help="Folder for the spoken evaluation set and its index.csv.")] = Path.home() / ".cache/hearo/spoken",
    cache: Annotated[Path, typer.Option(help="The data build's cache (`hearo data build --cache`): nexuiz-data, Asterisk and game voices decoded.")] = Path("var/data-cache"),
    household_tune: Annotated[Path, typer.Option(help="Household audio for the tuning voices' backgrounds (`--part calibration`).")] = Path("var/household-calibration"),
    household_val: Annotated[Path, typer.Option(help="Household audio for the validation voices' backgrounds (`--part evaluation`).")] = Path("var/household-evaluation"),
    normal_minutes: Annotated[float, typer.Option(help="Speech-heavy normal audio, in ten-minute files.")] = 130.0,
) -> None:
    """Build the spoken evaluation set: TTS distress phrases in every voice, real needhelp calls, speech-heavy normal audio."""
    from hearo.spoken_eval import build_spoken_set

    counts = build_spoken_set(out, cache, household_tune, household_val, normal_minutes)
    typer.echo(f"{counts}: {out / 'index.csv'}")


def train(
    data: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Dataset folder: `hearo data build` output (default backbone), or class folders / AI Hub layout (beats; docs/training.md).")],
    out: Annotated[Path, typer.Option(help="Model file to write (default backbone: services/inference/models/weights/default.pt).")],
    backbone: Annotated[str, typer.Option(help="'default' (EfficientAT mn04 fine-tuned with a nine-class sigmoid head) or 'beats' (fine-tune a head).")] = "beats",
    checkpoint: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="beats only: official BEATs checkpoint.")] = None,
    weights: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="default only: EfficientAT mn04 AudioSet weights to start from and distil from (default: ../shared/models), with class_labels_indices.csv beside them.")] = None,
    household: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="default only: household calibration audio (`hearo data household --part calibration`).")] = None,
    household_train: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="default only: household audio from training sources (`hearo data household --part training`), cut into normal examples.")] = None,
    work: Annotated[Optional[Path], typer.Option(help="default only: teacher cache and resumable checkpoint (default: DATA/.train).")] = None,
    init_from: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="default only: a default model file to continue from (else the published mn04).")] = None,
    max_minutes: Annotated[float, typer.Option(help="default only: stop after this much training time.")] = 90.0,
    distill_weight: Annotated[float, typer.Option(help="default only: weight of the distillation loss.")] = 0.5,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs to run (default: 6 for default, 30 for beats).")] = None,
    top_layers: Annotated[int, typer.Option(help="beats only: encoder layers to fine-tune with the head (0: head only).")] = 0,
    batch_size: Annotated[Optional[int], typer.Option(help="Default: 32 (beats), 48 (default).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Default: 1e-3 (beats head; default backbone, its head x5).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="beats only: continue the run in the run folder (the default backbone always resumes a matching run).")] = False,
    patience: Annotated[int, typer.Option(help="beats only: epochs without validation improvement before stopping.")] = 5,
    seed: Annotated[int, typer.Option()] = 0,
    val_fraction: Annotated[float, typer.Option(help="beats only: share of source files held out for validation.")] = 0.2,
    extra: Annotated[Optional[list[Path]], typer.Option(dir_okay=False, help="default only: a review export's manifest.csv (`hearo review export`) whose reviewed clips join the training clips; repeat for several.")] = None,
) -> None:
    """Train a model: our embedded default (mn04 fine-tuned, calibrated), or a 9-class head on a BEATs backbone."""
    import pickle

    if backbone == "default":
        from services.inference.training.default_model import DefaultTrainingConfig, train_default_model

        options: dict[str, object] = {"seed": seed, "max_minutes": max_minutes, "distill_weight": distill_weight,
                                      "household": household, "household_train": household_train, "work": work,
                                      "init_from": init_from, "extra": tuple(extra or ())}
        for key, value in (("weights", weights), ("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                options[key] = value
        try:
            train_default_model(DefaultTrainingConfig(data=data, out=out, **options))  # type: ignore[arg-type]
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            typer.echo(f"hearo train: {exc}", err=True)
            raise typer.Exit(2) from None
        return
    if backbone != "beats":
        raise typer.BadParameter("known backbones: default, beats", param_hint="--backbone")
    if extra:
        raise typer.BadParameter("the default backbone only (a review export is itself a class-folder dataset for beats)", param_hint="--extra")
    if checkpoint is None:
        raise typer.BadParameter("--backbone beats needs --checkpoint", param_hint="--checkpoint")
    from services.inference.training import TrainingConfig, run_training

    config = TrainingConfig(
        checkpoint=checkpoint, data=data, out=out, epochs=epochs or 30, top_layers=top_layers,
        batch_size=batch_size or 32, lr=lr or 1e-3, resume=resume, patience=patience, seed=seed,
        val_fraction=val_fraction,
    )
    try:
        run_training(config)
    except (ValueError, FileExistsError, FileNotFoundError, pickle.UnpicklingError, RuntimeError) as exc:
        typer.echo(f"hearo train: {exc}", err=True)
        raise typer.Exit(2) from None


def evaluate_command(
    manifest: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="CSV with file (relative to the CSV) and class_id (0-8).")] = None,
    household: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Household audio with no emergency (`hearo data household`): reports false alarms per hour.")] = None,
    model: Annotated[str, typer.Option(help="Registered model (default, small_cnn, efficientat, beats) or a model file.")] = "default",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the JSON report here (the PNG goes beside it).")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Confusion-matrix PNG (default: beside --json, else beside the manifest).")] = None,
    hop_s: Annotated[float, typer.Option(help="The service's hop between windows.")] = 0.5,
    smoothing_windows: Annotated[int, typer.Option(help="The detector's smoothing (gateway default 3).")] = 3,
    no_patterns: Annotated[bool, typer.Option("--no-patterns", help="The model alone: no alarm pattern detector.")] = False,
    spoken: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="The spoken set (`hearo data spoken`): keyword recall, false keywords and false spoken detections per hour (HEARO_SPOKEN_RECOGNISER picks the recogniser); with --household, spoken false alarms there too.")] = None,
    languages: Annotated[str, typer.Option(help="Spoken languages to listen for (with --spoken or --spoken-words).")] = "ko,en",
    spoken_words: Annotated[bool, typer.Option("--spoken-words", help="Fuse spoken distress words (--languages) with the model on --manifest and --household, as a gateway with HEARO_GATEWAY_SPOKEN enabled does.")] = False,
    gate: Annotated[bool, typer.Option("--gate", help="Judge behind the gateway's novelty gate (its HEARO_GATEWAY_NOVELTY_GATE settings, switched on): what it costs in recall, and the share of windows the model still judges.")] = False,
) -> None:
    """Score a model on labelled clips and/or household audio with the service's streaming semantics (alarm patterns included)."""
    import json

    from hearo.evaluate import evaluate, evaluate_household
    from services.inference.models.base import ModelLoadError
    from services.inference.registry import UnknownModelError

    if manifest is None and household is None and spoken is None:
        raise typer.BadParameter("give --manifest, --household, --spoken or several")
    patterns = False if no_patterns else None
    report: dict[str, object] = {}
    listened: tuple[str, ...] = ()
    if spoken_words:
        from shared.spoken import parse_languages, status

        try:
            listened = parse_languages(languages)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        reasons = status(listened)["languages"]
        assert isinstance(reasons, dict)
        if missing := {lang: why for lang, why in reasons.items() if why != "available"}:
            typer.echo(f"hearo eval --spoken-words: spoken words cannot run here: {missing}", err=True)
            raise typer.Exit(2)
    gate_policy = None
    if gate:
        from services.gateway.settings import GatewaySettings

        gate_policy = GatewaySettings().novelty_gate.model_copy(update={"enabled": True})
    if spoken is not None:
        from hearo.spoken_eval import evaluate_spoken
        from shared.spoken import SpokenUnavailable, parse_languages

        try:
            result = evaluate_spoken(spoken, parse_languages(languages), household=household, model=model)
        except (SpokenUnavailable, ValueError, ModelLoadError, UnknownModelError) as exc:
            typer.echo(f"hearo eval --spoken: {exc}", err=True)
            raise typer.Exit(2) from None
        for key, row in result["keyword_recall"].items():
            typer.echo(f"keyword recall {key}: {row['recall']:.3f} ({row['clips']} clips)")
        typer.echo(f"false keywords: {result['false_keywords_per_hour']} per hour, false spoken detections: "
                   f"{result['false_detections_per_hour']} per hour ({result['normal_hours']} h of speech-heavy normal audio)")
        typer.echo(f"recogniser CPU: {100 * result['recogniser_cpu_share_of_stream']:.2f} % of a core per stream; "
                   f"gate pass rate {result['gate_pass_rate']}")
        report["spoken"] = result
        if manifest is None:
            household = None  # the spoken report covered it
    try:
        if manifest is not None:
            clips = evaluate(manifest, model, png_out=png or (json_out.with_suffix(".png") if json_out else None),
                             hop_s=hop_s, smoothing_windows=smoothing_windows, alarm_patterns=patterns, gate=gate_policy,
                             spoken_languages=listened)
            report.update(clips.to_json())
        if household is not None:
            report["household"] = evaluate_household(household, model, hop_s=hop_s, smoothing_windows=smoothing_windows,
                                                     alarm_patterns=patterns, gate=gate_policy,
                                                     spoken_languages=listened).to_json()
    except (ValueError, ModelLoadError, UnknownModelError) as exc:
        typer.echo(f"hearo eval: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))


def thresholds_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV with file (relative to the CSV) and class_id (0-8); not the clips you evaluate on.")],
    model: Annotated[str, typer.Option(help="Registered model (default, small_cnn, efficientat, beats) or a model file.")] = "default",
    max_false_alarm: Annotated[float, typer.Option(min=0.0, max=1.0, help="Per class: most share of normal clips it may fire on (the trainer's bound).")] = 0.005,
    hop_s: Annotated[float, typer.Option(help="The service's hop between windows.")] = 0.5,
    smoothing_windows: Annotated[int, typer.Option(help="The detector's smoothing (gateway default 3).")] = 3,
) -> None:
    """Choose per-class thresholds for a model on labelled clips (the trainer's rule); prints the
    HEARO_GATEWAY_DETECTOR_THRESHOLDS line that makes the gateway (and hearo eval) use them."""
    import json

    from hearo.evaluate import tune_thresholds
    from services.inference.models.base import ModelLoadError
    from services.inference.registry import UnknownModelError

    try:
        chosen = tune_thresholds(manifest, model, hop_s, smoothing_windows, max_false_alarm)
    except (ValueError, ModelLoadError, UnknownModelError) as exc:
        typer.echo(f"hearo thresholds: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"HEARO_GATEWAY_DETECTOR_THRESHOLDS='{json.dumps(chosen, separators=(',', ':'))}'")
