"""What a reviewer can say about a segment, and the keys that say it (CLI and web page alike).

A label is a class key of :mod:`shared.taxonomy` (``normal`` for a false alarm) or
:data:`UNCLEAR` (the reviewer cannot tell: kept in the history, left out of the precision
and of the export). The keys: ``c`` confirms the system's class, ``0``-``8`` name a class by
its id, ``n`` is ``normal``, ``u`` unclear, ``s`` skips, ``b`` goes back one segment, ``q``
quits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.taxonomy import CLASS_KEYS, CLASSES, NORMAL

__all__ = ["REVIEW_LABELS", "UNCLEAR", "Move", "ReviewKey", "check_label", "read_key"]

UNCLEAR = "unclear"
REVIEW_LABELS: tuple[str, ...] = (*CLASS_KEYS, UNCLEAR)


def check_label(label: str) -> str:
    """``label`` when a reviewer may give it; ValueError naming the known labels otherwise."""
    if label not in REVIEW_LABELS:
        raise ValueError(f"unknown label {label!r}; known: {', '.join(REVIEW_LABELS)}")
    return label


class Move(enum.StrEnum):
    LABEL = "label"  # write a review with ``label``, then the next segment
    SKIP = "skip"
    BACK = "back"
    QUIT = "quit"


@dataclass(frozen=True)
class ReviewKey:
    move: Move
    label: str | None = None


_CLASS_BY_DIGIT = {str(c.id): c.key for c in CLASSES}
_MOVES = {"s": Move.SKIP, "b": Move.BACK, "q": Move.QUIT}


def read_key(key: str, model_label: str) -> ReviewKey | None:
    """What ``key`` asks for on a segment the system called ``model_label``; None: not a key."""
    key = key.lower()
    if key == "c":
        return ReviewKey(Move.LABEL, model_label)
    if key == "n":
        return ReviewKey(Move.LABEL, NORMAL.key)
    if key == "u":
        return ReviewKey(Move.LABEL, UNCLEAR)
    if key in _CLASS_BY_DIGIT:
        return ReviewKey(Move.LABEL, _CLASS_BY_DIGIT[key])
    if key in _MOVES:
        return ReviewKey(_MOVES[key])
    return None
