"""The type of one label rule and the two labels that are not classes.

Only types: :mod:`hearo.data.label_rules` (the table) and :mod:`hearo.data.labels` (the
lookup and the written rules) both build on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.taxonomy import CLASS_KEYS

NEGATIVE = "negative"
BACKGROUND = "background"


@dataclass(frozen=True)
class LabelRule:
    """Members of ``package`` matching ``glob`` are labelled ``label`` (see :mod:`hearo.data.labels`)."""

    package: str
    glob: str
    label: str

    def __post_init__(self) -> None:
        if self.label not in CLASS_KEYS and self.label not in (NEGATIVE, BACKGROUND):
            raise ValueError(f"rule {self.package}:{self.glob}: unknown label {self.label!r}")


def package_rules(package: str, prefix: str, pairs: list[tuple[str, str]]) -> list[LabelRule]:
    """The rules of one package: each (glob under ``prefix``, label) in order."""
    return [LabelRule(package, prefix + glob, label) for glob, label in pairs]
