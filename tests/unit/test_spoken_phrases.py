"""The reviewed phrase list: classes, languages, and every token known to its recogniser."""

from __future__ import annotations

import pytest

from shared.spoken import load_phrases, parse_languages
from shared.spoken.phrases import PHRASES_FILE
from tests.unit.spoken_support import need_language


def test_every_phrase_names_an_emergency_class_and_both_languages_are_covered() -> None:
    phrases = load_phrases()
    assert {p.class_key for p in phrases} == {"help", "fire", "medical", "trapped"}
    for language in ("ko", "en"):
        assert {p.class_key for p in phrases if p.language == language} == {"help", "fire", "medical", "trapped"}
    texts = {p.text for p in phrases}
    assert {"살려주세요", "도와주세요", "help", "help me", "I'm trapped"} <= texts


def test_the_short_everyday_words_must_stand_alone() -> None:
    alone = {p.text for p in load_phrases() if p.alone}
    assert {"help", "fire", "여기요", "불이야"} <= alone


def test_a_bad_file_is_refused(tmp_path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[[phrase]]\nkey="x"\nclass="normal"\nlanguage="ko"\ntext="x"\ntokens=["x"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="never fires"):
        load_phrases(bad)
    bad.write_text('[[phrase]]\nkey="x"\nclass="help"\nlanguage="en"\ntext="x"\ntokens=["x"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="kws_threshold"):
        load_phrases(bad)


def test_languages_setting() -> None:
    assert parse_languages("ko, en,ko") == ("ko", "en")
    assert parse_languages("") == ()
    with pytest.raises(ValueError, match="unknown"):
        parse_languages("ko,fr")


def test_korean_tokens_are_in_the_model_vocabulary() -> None:
    # Vosk silently drops a grammar word it does not know, which would leave an empty phrase.
    need_language("ko", "vosk")
    from shared.spoken.recognisers import korean_vocabulary

    vocabulary = korean_vocabulary()
    missing = {w for p in load_phrases() if p.language == "ko" for form in p.tokens for w in form} - vocabulary
    assert not missing


def test_english_tokens_are_in_the_dictionary() -> None:
    need_language("en", "vosk")
    import os

    from pocketsphinx import get_model_path

    with open(os.path.join(get_model_path(), "en-us", "cmudict-en-us.dict"), encoding="utf-8") as f:
        words = {line.split()[0] for line in f if line.strip()}
    missing = {w for p in load_phrases() if p.language == "en" for form in p.tokens for w in form} - words
    assert not missing, PHRASES_FILE
