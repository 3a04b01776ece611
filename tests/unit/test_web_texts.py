"""The web app's Korean and English texts (services/gateway/web/i18n): the same keys in both,
and every key the page uses is there, so no screen shows a raw key in either language."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from services.gateway.web_api import WEB_DIR

LANGUAGES = ("en", "ko")


def texts(lang: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((WEB_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    return loaded


def sources() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [WEB_DIR / "index.html", *(WEB_DIR / "js").glob("*.js")])


def used_keys() -> set[str]:
    source = sources()
    keys = set(re.findall(r'data-i18n="([a-z_.]+)"', source))
    keys |= set(re.findall(r'data-i18n-attr="[\w-]+:([a-z_.]+)"', source))
    keys |= set(re.findall(r'\bt\("([a-z_.]+)"', source))
    keys |= set(re.findall(r'"data-i18n": "([a-z_.]+)"', source))
    # Keys made from a value: every value the code can give them.
    reasons = set(re.findall(r'setState\(ListenState\.\w+, "(\w+)"\)', source))
    reasons |= set(re.findall(r'(?:stop|setWarning)\("(\w+)"\)', source))
    reasons |= {"stopped", "mic_denied", "offline", "reconnecting", "no_scores"}  # chosen in expressions
    keys |= {f"listen.reason.{r}" for r in reasons}
    keys |= {f"conn.{c}" for c in ("idle", "connecting", "listening", "reconnecting", "offline")}
    keys |= {f"state.{s}" for s in ("pending", "cancelled", "dispatching", "dispatched", "failed")}
    keys |= {f"reason.{r}" for r in re.findall(r'\w+: "([a-z ]+)"', source.split("const REASONS = {", 1)[1].split("}", 1)[0])}
    keys |= {"alert.agency.112", "alert.agency.119"}
    return {key for key in keys if "." in key}  # a bare word is a comment's example


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_key_the_page_uses_has_a_text(lang: str) -> None:
    missing = sorted(used_keys() - set(texts(lang)))
    assert missing == [], f"{lang}.json lacks {missing}"


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    english, korean = texts("en"), texts("ko")
    assert set(english) == set(korean)
    for key, text in english.items():
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", korean[key])), key


def test_the_page_uses_no_markup_from_data() -> None:
    # Text from the server or the person goes in as text (dom.h, textContent), never as markup.
    assert not re.search(r"\.innerHTML\s*=|insertAdjacentHTML|document\.write", sources())
