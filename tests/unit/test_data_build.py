"""hearo data build: the allow-list, the label mapping, synthesis, scene composition and the split."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hearo.data.build import Source, fingerprint, split_groups
from hearo.data.labels import BACKGROUND, LABEL_RULES, NEGATIVE, LabelRule, label_for
from hearo.data.packages import SAMPLE_RATE, decode_package, download
from hearo.data.scenes import compose
from hearo.data.sources import ALLOWED_PACKAGES, DEFAULT_PACKAGES, DisallowedPackageError, check_packages
from hearo.data.synth import GENERATORS
from shared.taxonomy import CLASS_KEYS


def test_allow_list_refuses_every_other_package() -> None:
    assert check_packages(["hedgewars-data", "blobwars-data", "hedgewars-data"]) == ("hedgewars-data", "blobwars-data")
    with pytest.raises(DisallowedPackageError, match="sound-theme-freedesktop"):
        check_packages(["hedgewars-data", "sound-theme-freedesktop"])


def test_download_refuses_before_calling_apt(tmp_path: Path) -> None:
    with pytest.raises(DisallowedPackageError):
        download(tmp_path, "kde-sounds")
    assert not (tmp_path / "debs").exists()


def test_defaults_and_rules_stay_inside_the_allow_list() -> None:
    assert set(DEFAULT_PACKAGES) <= set(ALLOWED_PACKAGES)
    assert {rule.package for rule in LABEL_RULES} <= set(ALLOWED_PACKAGES)
    assert {rule.label for rule in LABEL_RULES} <= set(CLASS_KEYS) | {NEGATIVE, BACKGROUND}


def test_label_mapping_first_match_wins_and_unmatched_is_unused() -> None:
    voices = "usr/share/games/hedgewars/Data/Sounds/voices/"
    assert label_for("hedgewars-data", f"./{voices}Pirate/PoisonCough.ogg") == "medical"
    assert label_for("hedgewars-data", f"{voices}Default/Laugh.ogg") == NEGATIVE
    assert label_for("hedgewars-data", f"{voices}Default/Yessir.ogg") is None
    assert label_for("warmux-data", f"{voices}Default/Ow1.ogg") is None  # rules are per package
    with pytest.raises(ValueError, match="unknown label"):
        LabelRule("hedgewars-data", "*", "explosion")


def test_every_default_package_has_rules() -> None:
    assert set(DEFAULT_PACKAGES) == {rule.package for rule in LABEL_RULES}


@pytest.mark.parametrize(
    ("package", "member", "label"),
    [
        ("0ad-data", "audio/actor/human/death/female_death_03.ogg", "crime"),
        ("0ad-data", "audio/attack/destruction/building_collapse_large_01.ogg", "accident"),
        ("0ad-data", "audio/interface/alarm/alarmattackplayer_1.ogg", NEGATIVE),
        ("0ad-data", "audio/music/gen_07.ogg", BACKGROUND),
        ("0ad-data", "audio/actor/fauna/death/goat_10.ogg", None),
    ],
)
def test_0ad_labels_reach_inside_public_zip(package: str, member: str, label: str | None) -> None:
    assert label_for(package, f"usr/share/games/0ad/mods/public/public.zip/{member}") == label


def test_decode_reads_labelled_members_inside_a_zip_member(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: 0ad-data\nVersion: 0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    public = root / "usr/share/games/0ad/mods/public"
    public.mkdir(parents=True)
    tone = np.sin(np.arange(22050) * 0.1).astype(np.float32) * 0.5
    with zipfile.ZipFile(public / "public.zip", "w") as archive:
        for name in ("audio/actor/human/death/male_death_01.ogg", "audio/actor/fauna/death/goat_10.ogg"):
            encoded = io.BytesIO()
            sf.write(encoded, tone, 22050, format="OGG", subtype="VORBIS")
            archive.writestr(name, encoded.getvalue())
    (tmp_path / "cache/debs").mkdir(parents=True)
    deb = tmp_path / "cache/debs/0ad-data_0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)

    clips, failed = decode_package(tmp_path / "cache", "0ad-data")

    assert failed == 0
    assert [(c.member, c.label) for c in clips] == [
        ("usr/share/games/0ad/mods/public/public.zip/audio/actor/human/death/male_death_01.ogg", "crime")
    ]
    assert clips[0].seconds == pytest.approx(1.0, abs=0.01)
    assert sf.info(str(clips[0].wav)).samplerate == SAMPLE_RATE


def test_new_package_labels() -> None:
    mg = "usr/share/games/megaglest/techs/megapack/"
    assert label_for("megaglest-data", f"{mg}commondata/sounds/archer_die2.wav") == "crime"
    assert label_for("megaglest-data", f"{mg}factions/magic/units/behemoth/sounds/behemoth_die1.wav") is None
    assert label_for("megaglest-data", f"{mg}commondata/sounds/tech_building_fall3.wav") == "accident"
    stk = "usr/share/games/supertuxkart/data/"
    assert label_for("supertuxkart-data", f"{stk}sfx/WilhelmScream.ogg") == "crime"
    assert label_for("supertuxkart-data", f"{stk}sfx/horn.ogg") == NEGATIVE
    assert label_for("supertuxkart-data", f"{stk}music/Lava.ogg") == BACKGROUND
    assert label_for("widelands-data", "usr/share/games/widelands/data/sound/hammering/hammering_01.ogg") == NEGATIVE
    assert label_for("wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/data/core/music/battle.ogg") == BACKGROUND


@pytest.mark.parametrize("key", list(GENERATORS))
def test_generators_are_seeded_finite_and_normalised(key: tuple[str, str]) -> None:
    generate = GENERATORS[key]
    a, b = generate(np.random.default_rng(3)), generate(np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert a.dtype == np.float32 and a.size > SAMPLE_RATE and np.all(np.isfinite(a))
    assert np.max(np.abs(a)) == pytest.approx(1.0, abs=1e-3)


def test_smoke_alarm_follows_temporal_three() -> None:
    # 0.5 s on / 0.5 s off x 3 then 1.5 s off: 4 s cycle with 1.5 s of tone in it.
    alarm = GENERATORS[("fire", "smoke_alarm_t3")](np.random.default_rng(7))
    frames = np.abs(alarm[: alarm.size // 160 * 160]).reshape(-1, 160).max(axis=1) > 0.05
    on_share = frames[: 400].mean()  # first 4 s
    assert 0.3 < on_share < 0.45


def test_scene_has_the_asked_length_and_keeps_the_event_span() -> None:
    rng = np.random.default_rng(0)
    event = np.sin(np.linspace(0, 2000, 8000)).astype(np.float32)
    background = rng.standard_normal(3 * SAMPLE_RATE).astype(np.float32) * 0.1
    scene, recipe = compose(event, background, 4.0, rng)
    assert scene.shape == (4 * SAMPLE_RATE,) and scene.dtype == np.float32
    assert 0.0 <= recipe.offset_s < recipe.end_s <= 4.0
    assert recipe.snr_db is not None and -5.0 <= recipe.snr_db <= 35.0
    assert np.max(np.abs(scene)) < 1.0


def test_scene_snrs_cover_noisy_mixtures_and_clean_recordings() -> None:
    rng = np.random.default_rng(3)
    event = np.sin(np.linspace(0, 2000, 8000)).astype(np.float32)
    background = rng.standard_normal(3 * SAMPLE_RATE).astype(np.float32) * 0.1
    snrs = np.array([compose(event, background, 4.0, rng)[1].snr_db for _ in range(200)])
    assert snrs.min() >= -5.0 and snrs.max() <= 35.0
    assert 0.1 < np.mean(snrs > 20.0) < 0.4  # the as-recorded share
    assert np.mean(snrs < 5.0) > 0.2  # many stay hard mixtures (expected 0.3)


def test_fingerprint_matches_identical_audio_only() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(SAMPLE_RATE).astype(np.float32)
    assert fingerprint(a) == fingerprint(a.copy() * 0.5)  # level does not matter
    assert fingerprint(a) != fingerprint(rng.standard_normal(SAMPLE_RATE).astype(np.float32) * np.linspace(0, 1, SAMPLE_RATE))


def test_split_keeps_each_group_on_one_side_and_is_seeded() -> None:
    audio = np.zeros(10, dtype=np.float32)
    sources = [Source("help", f"tts:ko:{i}", "espeak-ng", f"v{j}", "x", audio, "tts") for i in range(10) for j in range(3)]
    val = split_groups(sources, 0.2, seed=0)
    assert len(val) == 2 and val == split_groups(list(reversed(sources)), 0.2, seed=0)
    assert val != split_groups(sources, 0.2, seed=1) or len(val) == 2
    sides = {}
    for s in sources:
        sides.setdefault(s.group, set()).add(s.group in val)
    assert all(len(v) == 1 for v in sides.values())
