"""The nine Hear-o classes: the one table every service imports.

Ids are stable and part of the wire format, model files and the database; never renumber.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Agency(str, enum.Enum):
    """Korean emergency numbers a class is reported to by default."""

    POLICE = "112"
    FIRE_RESCUE = "119"


@dataclass(frozen=True)
class EmergencyClass:
    id: int
    key: str
    label_en: str
    label_ko: str
    agency: Agency | None

    @property
    def is_emergency(self) -> bool:
        return self.agency is not None


CLASSES: tuple[EmergencyClass, ...] = (
    EmergencyClass(0, "normal", "Normal sound", "일상 소리", None),
    EmergencyClass(1, "crime", "Crime (break-in, assault, screams)", "범죄 (침입, 폭행, 비명)", Agency.POLICE),
    EmergencyClass(2, "trapped", "Trapped (shut in, banging)", "갇힘 (고립, 두드림)", Agency.FIRE_RESCUE),
    EmergencyClass(3, "electric", "Electrical accident", "전기 사고", Agency.FIRE_RESCUE),
    EmergencyClass(4, "gas", "Gas leak or gas/CO alarm", "가스 누출, 가스/일산화탄소 경보", Agency.FIRE_RESCUE),
    EmergencyClass(5, "fire", "Fire or smoke alarm", "화재, 화재경보", Agency.FIRE_RESCUE),
    EmergencyClass(6, "medical", "Medical emergency", "응급 의료 상황", Agency.FIRE_RESCUE),
    EmergencyClass(7, "accident", "Accident (fall, collapse, crash)", "사고 (낙상, 붕괴, 충돌)", Agency.FIRE_RESCUE),
    EmergencyClass(8, "help", "Call for help", "구조 요청", Agency.FIRE_RESCUE),
)

NUM_CLASSES = len(CLASSES)
CLASS_KEYS: tuple[str, ...] = tuple(c.key for c in CLASSES)
NORMAL = CLASSES[0]

_BY_KEY = {c.key: c for c in CLASSES}


def by_key(key: str) -> EmergencyClass:
    """The class named ``key``; raises KeyError naming the known keys otherwise."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown class {key!r}; known: {', '.join(CLASS_KEYS)}") from None


def by_id(class_id: int) -> EmergencyClass:
    if not 0 <= class_id < NUM_CLASSES:
        raise KeyError(f"class id {class_id} out of range 0..{NUM_CLASSES - 1}")
    return CLASSES[class_id]
