"""The one label file: every source in exactly one class, and the written rules hold."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from hearo.data.labels import BACKGROUND, LABEL_RULES, NEGATIVE, label_for
from hearo.data.synth import GENERATORS, TTS_PHRASES


def _example(glob: str) -> str:
    """A member path the glob matches: '*' -> 'x', '[a-z]' -> its first character, '?' -> 'x'."""
    return re.sub(r"\[(.)[^\]]*\]", r"\1", glob).replace("*", "x").replace("?", "x")


@pytest.mark.parametrize("rule", LABEL_RULES, ids=lambda r: f"{r.package}:{r.glob}")
def test_no_earlier_rule_gives_a_rules_files_another_label(rule) -> None:  # type: ignore[no-untyped-def]
    """First match wins, so a file one rule labels must not be caught first by a rule of
    another label: that would be one source meant for two classes."""
    assert label_for(rule.package, _example(rule.glob)) == rule.label


def test_no_rule_is_written_twice_with_two_labels() -> None:
    labels: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rule in LABEL_RULES:
        labels[(rule.package, rule.glob)].add(rule.label)
    assert {key: found for key, found in labels.items() if len(found) > 1} == {}


def test_generators_and_phrases_each_have_one_label() -> None:
    recipes: dict[str, set[str]] = defaultdict(set)
    for label, recipe in GENERATORS:
        recipes[recipe].add(label)
    assert all(len(found) == 1 for found in recipes.values())
    phrases: dict[str, set[str]] = defaultdict(set)
    for phrase in TTS_PHRASES:
        phrases[phrase.text].add(phrase.label)
    assert all(len(found) == 1 for found in phrases.values())


HW = "usr/share/games/hedgewars/Data/"
WES = "usr/share/games/wesnoth/1.16/data/core/sounds/"
RE_ = "usr/share/games/redeclipse/data/sounds/"
NEX = "usr/share/games/nexuiz/data/data.pk3/sound/"


@pytest.mark.parametrize(("package", "member", "label"), [
    # Rule 1: cries of pain are crime, groans and gasps medical, an ambiguous grunt unused.
    ("wesnoth-1.16-data", f"{WES}human-hit-1.ogg", "crime"),
    ("wesnoth-1.16-data", f"{WES}human-old-die-1.ogg", "crime"),
    ("redeclipse-data", f"{RE_}player/pain1.ogg", "crime"),
    ("hedgewars-data", f"{HW}Sounds/voices/Default/PoisonMoan.ogg", "medical"),
    ("nexuiz-data", f"{NEX}player/marine/player/gasp.ogg", "medical"),
    ("hedgewars-data", f"{HW}Sounds/voices/Default/Ooff1.ogg", None),
    # Rule 2: hammering is a negative, metal banging trapped.
    ("hedgewars-data", f"{HW}Sounds/hammer.ogg", NEGATIVE),
    ("widelands-data", "usr/share/games/widelands/data/sound/hammering/hammering_01.ogg", NEGATIVE),
    ("supertuxkart-data", "usr/share/games/supertuxkart/data/sfx/anvil.ogg", "trapped"),
    # Rule 3: a hum is a background, thunder a negative, arcing electric.
    ("redeclipse-data", f"{RE_}ambience/hum.ogg", BACKGROUND),
    ("wesnoth-1.16-data", f"{WES}lightning-1.ogg", NEGATIVE),
    ("nexuiz-data", f"{NEX}ambient/sparks1.ogg", "electric"),
    # Rule 4: only words of distress are help; shouted call-outs are everyday speech.
    ("hedgewars-data", f"{HW}Sounds/voices/Default/Takecover.ogg", BACKGROUND),
    ("nexuiz-data", f"{NEX}player/marine/coms/needhelp1.ogg", "help"),
    ("nexuiz-data", f"{NEX}player/marine/coms/attack.ogg", BACKGROUND),
    # Household system sounds are hard negatives.
    ("gnome-audio", "usr/share/sounds/phone.wav", NEGATIVE),
])
def test_the_written_rules(package: str, member: str, label: str | None) -> None:
    assert label_for(package, member) == label


def test_medical_speech_is_not_synthesised() -> None:
    """Medical is built from coughs, gasps and groans, so a calm TTS voice is no cue for it."""
    assert not [p for p in TTS_PHRASES if p.label == "medical"]
    assert {p.label for p in TTS_PHRASES if p.label != "negative"} <= {"help", "trapped", "gas"}
