"""The reviewer page's texts: every key review.html and js/review.js use is in both languages,
the keys made from a value for every value the API can give (kinds, states, cancel kinds)."""

from __future__ import annotations

import re

import pytest

from services.gateway.web_api import WEB_DIR
from shared.incident_state import CancelKind, IncidentKind
from shared.review.segments import REPORTED_STATES
from tests.unit.test_web_texts import texts


def used_keys() -> set[str]:
    source = (WEB_DIR / "review.html").read_text(encoding="utf-8") + (WEB_DIR / "js" / "review.js").read_text(encoding="utf-8")
    keys = set(re.findall(r'data-i18n="([a-z_.]+)"', source))
    keys |= set(re.findall(r'data-i18n-attr="[\w-]+:([a-z_.]+)"', source))
    keys |= set(re.findall(r'\bt\("([a-z_.]+)"', source))
    keys |= set(re.findall(r'"(review\.[a-z_.]+)"', source))
    keys |= {f"review.kind.{kind}" for kind in IncidentKind}
    keys |= {f"review.state.{state}" for state in ("cancelled", *REPORTED_STATES)}
    keys |= {f"review.cancel.{kind}" for kind in CancelKind}
    return keys


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_key_the_review_page_uses_is_there(lang: str) -> None:
    missing = used_keys() - set(texts(lang))
    assert not missing, f"{lang}: {sorted(missing)}"
