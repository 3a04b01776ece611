"""The review loop's round trip (issue 17): incidents with clips in a SQLite deployment are
reviewed (a false alarm's class corrected), exported with their owners' consent, added to a
data build as an extra source, and trained on in a tiny run of the default model, whose file
then lists each reviewed clip with its corrected label and consent."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearo.cli import app
from services.inference.models.default import load_default_model
from services.inference.settings import InferenceSettings
from services.inference.training.default_model import DefaultTrainingConfig, train_default_model
from services.inference.training.manifest import read_manifest_splits
from hearo.data.reviewed import add_reviewed
from shared.db import Database
from shared.review import device_pseudonym, export_reviewed, record_review
from tests.review_support import clip_store, make_incidents
from tests.unit.test_default_model import _tiny_dataset

MN04 = InferenceSettings().efficientat_weights


async def test_a_reviewed_correction_reaches_the_data_build_and_a_training_run(sqlite_db: Database, tmp_path: Path) -> None:
    store = clip_store(tmp_path)
    made = await make_incidents(sqlite_db, store)
    # The fire false alarm was one; the gas "false alarm" was really a fire (corrected).
    await record_review(sqlite_db, made.donated, "normal", reviewer="kim")
    await record_review(sqlite_db, made.donated_gas, "fire", reviewer="kim", note="a smoke alarm, cancelled by mistake")
    await record_review(sqlite_db, made.reported, "crime", reviewer="kim")  # a report: not exported
    export = tmp_path / "reviewed"
    assert (await export_reviewed(sqlite_db, store, export, reviewer="kim")).exported == 2

    # hearo data build --extra: into a (tiny) build, with labels and consent in its manifest.
    build = tmp_path / "data"
    _tiny_dataset(build)
    assert add_reviewed(build, [export / "manifest.csv"]) == 2
    with open(build / "manifest.csv", newline="") as f:
        rows = {row["source_path"]: row for row in csv.DictReader(f) if row["source_package"] == "review"}
    gas = rows[str(made.donated_gas)]
    assert (gas["class"], gas["class_id"], gas["model_label"], gas["split"]) == ("fire", "5", "gas", "train")
    assert (gas["consent"], gas["device"]) == ("donated", device_pseudonym(made.devices[2])) and gas["donated_at"]
    assert (build / gas["file"]).is_file() and float(gas["event_end_s"]) > float(gas["event_start_s"])
    assert rows[str(made.donated)]["class"] == "normal" and str(made.reported) not in rows
    splits = read_manifest_splits(build, 16_000)
    reviewed = {c.group: c.class_id for c in splits.train if c.group.startswith("review:")}
    assert reviewed == {f"review:{made.donated}": 0, f"review:{made.donated_gas}": 5}
    # Adding again replaces the reviewed rows, never doubles them.
    assert add_reviewed(build, [export / "manifest.csv"]) == 2
    assert len(read_manifest_splits(build, 16_000).train) == len(splits.train)


@pytest.mark.slow
@pytest.mark.skipif(not MN04.is_file(), reason="needs ../shared/models/efficientat_mn04_as")
async def test_hearo_train_extra_trains_on_the_reviewed_clips(sqlite_db: Database, tmp_path: Path) -> None:
    store = clip_store(tmp_path)
    made = await make_incidents(sqlite_db, store)
    await record_review(sqlite_db, made.donated, "normal", reviewer="kim")
    await record_review(sqlite_db, made.donated_gas, "fire", reviewer="lee")
    export = tmp_path / "reviewed"
    await export_reviewed(sqlite_db, store, export, reviewer="kim")
    _tiny_dataset(tmp_path / "data")
    tiny_train = len(read_manifest_splits(tmp_path / "data", 16_000).train)
    out = tmp_path / "model.pt"
    config = DefaultTrainingConfig(data=tmp_path / "data", out=out, epochs=1, batch_size=8, threads=1,
                                   extra=(export / "manifest.csv",))
    train_default_model(config)
    recipe = load_default_model(out)[1]["recipe"]
    assert recipe["train_clips"] == tiny_train + 2
    by_incident = {row["incident"]: row for row in recipe["reviewed"]}
    assert by_incident[str(made.donated_gas)] == {
        "incident": str(made.donated_gas), "class": "fire", "model_label": "gas", "reviewer": "lee",
        "consent": "donated", "device": device_pseudonym(made.devices[2]),
        "donated_at": by_incident[str(made.donated_gas)]["donated_at"],
    }  # fmt: skip
    assert by_incident[str(made.donated)]["class"] == "normal" and by_incident[str(made.donated)]["donated_at"]


def test_a_refused_export_stops_the_data_build_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "reviewed").mkdir()
    (tmp_path / "reviewed" / "manifest.csv").write_text("file,class\nnormal/a.wav,normal\n")
    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["data", "build", "--out", str(out), "--cache", str(tmp_path / "cache"),
                                      "--extra", str(tmp_path / "reviewed" / "manifest.csv")])
    assert result.exit_code == 1 and "not a review export (missing columns: class_id" in result.output
    assert not out.exists() and not (tmp_path / "cache").exists()
