"""The duress code itself: what it may be, its normal form, its hash and the check against it."""

from __future__ import annotations

import time

import pytest

from shared.incidents.duress import (
    DURESS_CLASSES,
    check_code,
    duress_applies,
    hash_code,
    normalise_code,
    verify_code,
)
from shared.taxonomy import CLASSES


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("1234", "1234"),
        ("１２３４", "1234"),  # full-width digits (a Korean IME) are the same PIN
        ("  Blue   Kettle\tAgain ", "blue kettle again"),
        ("STRASSE ist weit", "strasse ist weit"),
        ("Straße ist weit", "strasse ist weit"),  # case folding, not lowering
        ("빨간\u3000주전자", "빨간 주전자"),  # an ideographic space is a space
    ],
)
def test_a_code_is_compared_in_its_normal_form(typed: str, normal: str) -> None:
    assert normalise_code(typed) == normal
    assert check_code(typed) == normal


@pytest.mark.parametrize("code", ["123", "1234567890123", "kettle", "   ", "", "x" * 201, "12 a\x00"])
def test_a_short_pin_a_single_word_or_a_long_code_is_refused_without_quoting_it(code: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_code(code)
    assert code.strip() == "" or code not in str(refused.value)


@pytest.mark.parametrize("code", ["0000", "123456789012", "red kettle", "a b"])
def test_a_pin_of_4_to_12_digits_or_a_phrase_of_two_words_is_a_code(code: str) -> None:
    assert check_code(code) == code


def test_only_a_salted_slow_hash_is_kept_and_it_says_how_it_was_made() -> None:
    first, second = hash_code("Red Kettle"), hash_code("Red Kettle")
    assert first != second  # a salt of its own each time
    scheme, log2_n, r, p, salt, key = first.split("$")
    assert (scheme, log2_n, r, p) == ("scrypt", "15", "8", "1") and len(first) <= 200
    assert "kettle" not in first.lower()
    started = time.perf_counter()
    assert verify_code("  red   KETTLE ", first) and verify_code("red kettle", second)
    assert time.perf_counter() - started > 0.02  # slow on purpose: a stolen hash costs time per guess


def test_a_wrong_code_a_missing_or_malformed_hash_never_verifies() -> None:
    stored = hash_code("2580")
    assert not verify_code("2581", stored)
    assert not verify_code("2580", None)
    assert not verify_code("", stored)
    for broken in ("", "scrypt$15$8$1$nope", "bcrypt$15$8$1$AAAA$AAAA", stored.replace("$15$", "$40$")):
        assert not verify_code("2580", broken)


def test_no_code_set_takes_as_long_to_check_as_a_wrong_one() -> None:
    # Otherwise the time a cancel with a code takes would tell whether one is set.
    stored = hash_code("2580")

    def timed(stored_hash: str | None) -> float:
        started = time.perf_counter()
        verify_code("9999", stored_hash)
        return time.perf_counter() - started

    none_set, wrong = min(timed(None) for _ in range(3)), min(timed(stored) for _ in range(3))
    assert 0.5 < none_set / wrong < 2.0


def test_duress_applies_to_crime_and_help_only() -> None:
    assert DURESS_CLASSES == {"crime", "help"}
    assert [c.key for c in CLASSES if duress_applies(c.key)] == ["crime", "help"]
    for key in ("fire", "gas", "electric", "medical", "accident", "trapped", "normal"):
        assert not duress_applies(key)
