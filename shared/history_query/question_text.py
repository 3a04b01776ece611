"""The question as the parser reads it: lower case, single spaces, each phrase read once."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar

_T = TypeVar("_T")

# A word starts where no Hangul letter, Latin letter or digit comes before.
_WORD_START = r"(?<![\uac00-\ud7a3a-z0-9])"
_ALNUM = re.compile(r"[a-z0-9]")
_TAKEN = "\x00"


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_WORD_START + "(?:" + pattern + ")")


class QuestionText:
    """The question in lower case with single spaces. A matched phrase is blanked out so that no
    word is read twice, and the time phrases are remembered in the question's own spelling."""

    def __init__(self, question: str) -> None:
        chars: list[str] = []
        self._origin: list[int] = []  # where each character came from in the question
        for i, char in enumerate(question):
            if char.isspace() or not char.isprintable():
                if chars and chars[-1] != " ":
                    chars.append(" ")
                    self._origin.append(i)
                continue
            lower = char.lower()
            chars.append(lower if len(lower) == 1 else char)
            self._origin.append(i)
        self.text = "".join(chars).replace("\u2019", "'")
        self._question = question
        self._time_spans: list[tuple[int, int]] = []

    def take(self, pattern: str, *, is_time: bool = False) -> list[re.Match[str]]:
        """Each match of ``pattern`` at a word start, blanked out of the text."""
        found = [m for m in _compiled(pattern).finditer(self.text) if m.end() > m.start() and self._ends_word(m)]
        for m in found:
            self._blank(m.start(), m.end(), is_time)
        return found

    def take_suffix(self, pattern: str) -> bool:
        """Whether ``pattern`` occurs anywhere (a Korean ending such as 부터); blanks it out."""
        found = list(re.finditer(pattern, self.text))
        for m in found:
            self._blank(m.start(), m.end(), True)
        return bool(found)

    def take_first(self, table: Sequence[tuple[str, _T]], *, is_time: bool = True) -> tuple[re.Match[str], _T] | None:
        """The meaning of the first entry of ``table`` that occurs (all of its matches taken)."""
        for pattern, meaning in table:
            found = self.take(pattern, is_time=is_time)
            if found:
                return found[0], meaning
        return None

    def take_each(self, table: Sequence[tuple[str, _T]]) -> list[tuple[re.Match[str], _T]]:
        """Every entry of ``table`` that occurs, with its meaning, in the table's order."""
        return [(m, meaning) for pattern, meaning in table for m in self.take(pattern)]

    def period(self) -> str:
        """The time phrases as the question wrote them, in order, with what lay between them
        when that was only spaces ("월요일부터", "어제 새벽 3시")."""
        spans = sorted((self._origin[s], self._origin[e - 1] + 1) for s, e in self._time_spans)
        out = ""
        last_end: int | None = None
        for start, end in spans:
            if last_end is not None:
                gap = self._question[last_end:start]
                out += gap if gap.isspace() or not gap else " "
            out += self._question[start:end]
            last_end = end
        return " ".join(out.split())

    def _ends_word(self, m: re.Match[str]) -> bool:
        end = m.end()
        return end >= len(self.text) or not (_ALNUM.match(self.text[end - 1]) and _ALNUM.match(self.text[end]))

    def _blank(self, start: int, end: int, is_time: bool) -> None:
        self.text = self.text[:start] + _TAKEN * (end - start) + self.text[end:]
        if is_time:
            self._time_spans.append((start, end))

