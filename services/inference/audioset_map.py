"""AudioSet label -> Hear-o class map: turns any AudioSet tagger into a 9-class detector.

The map is many-to-many with weights: one AudioSet label may support several classes (a
scream is evidence for ``crime`` and for ``help``) and a class gathers several labels.

Rule (per window, per class c, with p the tagger's sigmoid probabilities):

    score[c]      = max over the entries (label l, class c, weight w) of  w * p[l]
    score[normal] = 1 - max over the eight emergency classes of score[c]

so every score lies in [0, 1] and a class with no firing label scores 0. Weights are
<= 1 and say how much a label alone implies the class (1: the label is the emergency,
e.g. "Smoke detector, smoke alarm"; 0.3-0.5: also common in ordinary life, e.g. "Cough",
"Slam"). These are evidence scores, not calibrated probabilities: the detector's per-class
thresholds are set on them by measurement.

Entries name labels by AudioSet machine id (mid), which is stable across label lists; the
display name is the fallback for lists without mids and documents the entry. Measurements
behind the choices: ``docs/audioset-map.md``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from shared.taxonomy import NORMAL, NUM_CLASSES, by_key


@dataclass(frozen=True)
class MapEntry:
    """One weighted edge of the map: AudioSet label ``mid`` counts ``weight`` towards ``class_key``."""

    mid: str
    display_name: str
    class_key: str
    weight: float


@dataclass(frozen=True)
class AudioSetLabel:
    """One output of a tagger: its position in the score vector, mid and (if known) display name."""

    index: int
    mid: str
    display_name: str | None = None


def read_labels_csv(path: str | Path) -> list[AudioSetLabel]:
    """The labels of an AudioSet ``class_labels_indices.csv`` (index, mid, display_name), by index."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        labels = [AudioSetLabel(int(r["index"]), r["mid"], r["display_name"]) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a class_labels_indices.csv (index,mid,display_name): {exc!r}") from exc
    return sorted(labels, key=lambda label: label.index)


def _entries(mid: str, display_name: str, **weights: float) -> tuple[MapEntry, ...]:
    return tuple(MapEntry(mid, display_name, key, w) for key, w in weights.items())


# Starting set: DESIGN.md section 1, refined with EfficientAT mn04 on synthesised sounds.
# Deliberately absent: "Beep, bleep" (microwaves, timers, 1 kHz test tones all fire it),
# "Buzzer" (door and game buzzers; it also fires on smoke alarms, which would split the
# fire score), "Static" and "White noise" (any broadband noise), "Fireworks", "Cap gun".
MAP_ENTRIES: tuple[MapEntry, ...] = (
    # fire
    *_entries("/m/01y3hg", "Smoke detector, smoke alarm", fire=1.0),
    *_entries("/m/0c3f7m", "Fire alarm", fire=1.0),
    *_entries("/m/02_41", "Fire", fire=1.0),
    *_entries("/m/07pzfmf", "Crackle", fire=0.6, electric=0.4),
    # A generic alarm may be smoke, CO or gas; mn04 cannot tell temporal-3 from temporal-4.
    *_entries("/m/07pp_mv", "Alarm", fire=0.5, gas=0.5),
    # gas: white noise alone gives "Spray" about 0.11, hence its low weight.
    *_entries("/m/07rjwbb", "Hiss", gas=0.8),
    *_entries("/m/06wzb", "Steam", gas=0.6),
    *_entries("/m/07qlf79", "Spray", gas=0.4),
    # electric: few labels, and all of them also describe harmless appliances.
    *_entries("/m/07pjwq1", "Buzz", electric=0.5),
    *_entries("/m/06xkwv", "Mains hum", electric=0.5),
    *_entries("/m/07rcgpl", "Hum", electric=0.4),
    *_entries("/m/07p9k1k", "Sizzle", electric=0.4),
    # crime
    *_entries("/m/032s66", "Gunshot, gunfire", crime=1.0),
    *_entries("/m/04zjc", "Machine gun", crime=1.0),
    *_entries("/m/02z32qm", "Fusillade", crime=1.0),
    *_entries("/m/07rn7sz", "Shatter", crime=0.8, accident=0.4),
    *_entries("/m/07pc8lb", "Breaking", crime=0.8, accident=0.4),
    *_entries("/m/039jq", "Glass", crime=0.5),
    *_entries("/m/014zdl", "Explosion", crime=0.6, accident=0.6),
    *_entries("/m/07pjjrj", "Smash, crash", crime=0.6, accident=0.8),
    *_entries("/m/07ryjzk", "Slap, smack", crime=0.5),
    # A scream is attack or distress: both classes get it, the detector decides.
    *_entries("/m/03qc9zr", "Screaming", crime=0.8, help=0.8),
    # trapped: banging on a door also happens every day; alone it is weak evidence.
    *_entries("/m/07r4wb8", "Knock", trapped=0.5),
    *_entries("/m/07pws3f", "Bang", trapped=0.5, accident=0.6),
    *_entries("/m/07qnq_y", "Thump, thud", trapped=0.4, accident=0.7),
    # accident
    *_entries("/m/07rrh0c", "Thunk", accident=0.5),
    *_entries("/m/07rjzl8", "Slam", accident=0.4),
    # medical
    *_entries("/m/07s2xch", "Groan", medical=0.8),
    *_entries("/m/07mzm6", "Wheeze", medical=0.8),
    *_entries("/m/07qw_06", "Wail, moan", medical=0.7),
    *_entries("/m/07s0dtb", "Gasp", medical=0.7),
    *_entries("/m/07qz6j3", "Whimper", medical=0.6),
    *_entries("/m/0463cq4", "Crying, sobbing", medical=0.5),
    *_entries("/m/01b_21", "Cough", medical=0.4),
    # help: shouting is also play and sport; plain speech maps nowhere.
    *_entries("/m/07p6fty", "Shout", help=0.7),
    *_entries("/m/07sr1lc", "Yell", help=0.7),
    *_entries("/t/dd00135", "Children shouting", help=0.5),
)


class AudioSetClassMap(nn.Module):
    """Maps AudioSet probabilities [B, L] to Hear-o class scores [B, 9] (taxonomy id order).

    Built for one label list (its order is the tagger's output order); raises ValueError
    when a mapped label is not in it. A module so that ``.to(device)`` moves its table;
    it has no parameters and nothing persistent.

    >>> class_map = AudioSetClassMap.from_labels_csv("class_labels_indices.csv")
    >>> scores = class_map(torch.sigmoid(logits))   # [B, 9], each in [0, 1]
    """

    weights: Tensor

    def __init__(self, labels: Sequence[AudioSetLabel], entries: Sequence[MapEntry] = MAP_ENTRIES) -> None:
        super().__init__()
        indices = sorted(label.index for label in labels)
        if indices != list(range(len(labels))):
            raise ValueError(f"label indices must be exactly 0..{len(labels) - 1}, each once")
        by_mid = {label.mid: label.index for label in labels}
        by_name = {label.display_name: label.index for label in labels if label.display_name is not None}
        weights = torch.zeros(NUM_CLASSES, len(labels))
        for entry in entries:
            class_id = by_key(entry.class_key).id
            if class_id == NORMAL.id:
                raise ValueError(f"{entry}: 'normal' is derived from the other classes, not mapped")
            if not 0.0 < entry.weight <= 1.0:
                raise ValueError(f"{entry}: weight must be in (0, 1]")
            index = by_mid.get(entry.mid, by_name.get(entry.display_name))
            if index is None:
                raise ValueError(
                    f"mapped AudioSet label {entry.display_name!r} ({entry.mid}) is not in the label list"
                )
            if weights[class_id, index] != 0:
                raise ValueError(f"{entry}: label mapped to {entry.class_key!r} twice")
            weights[class_id, index] = entry.weight
        self.register_buffer("weights", weights, persistent=False)

    @classmethod
    def from_labels_csv(cls, path: str | Path) -> AudioSetClassMap:
        """From an AudioSet ``class_labels_indices.csv`` (columns index, mid, display_name)."""
        return cls(read_labels_csv(path))

    @classmethod
    def from_label_dict(cls, label_dict: Mapping[int, str]) -> AudioSetClassMap:
        """From an index -> mid mapping, as stored in BEATs' AudioSet fine-tuned checkpoints."""
        return cls([AudioSetLabel(int(index), mid) for index, mid in label_dict.items()])

    @property
    def num_labels(self) -> int:
        return self.weights.shape[1]

    def forward(self, probs: Tensor) -> Tensor:
        """Class scores [B, 9] in [0, 1] from AudioSet sigmoid probabilities [B, L] (not logits)."""
        if probs.dim() != 2 or probs.shape[1] != self.num_labels:
            raise ValueError(f"expected probabilities [B, {self.num_labels}], got shape {tuple(probs.shape)}")
        scores = (probs[:, None, :] * self.weights.to(probs.dtype)).amax(dim=2)
        # The table's normal row is empty, so the row max here is the max over emergencies.
        scores[:, NORMAL.id] = 1.0 - scores.amax(dim=1)
        return scores

