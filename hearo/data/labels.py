"""The one reviewed label mapping: (package, member glob) -> class key, hard negative or background.

Every label decision about a package file lives in the table :data:`LABEL_RULES`
(:mod:`hearo.data.label_rules`) under the written rules below, and nowhere else. Rules are
tried in order and the first match wins; a member no rule matches is not used at all (most game
sounds are neither an emergency nor a useful negative). Globs are ``fnmatch`` patterns on
the member's path inside the package, without a leading "./" ("*" also crosses "/").

Roles:

- a class key (``shared.taxonomy``): the file is an event of that class, composed into
  scenes over backgrounds;
- ``NEGATIVE``: a hard negative, an event-like sound that must stay ``normal`` (game alerts,
  laughter, calm prompts, single door slams), composed into scenes exactly like events;
- ``BACKGROUND``: a bed for scenes (speech, music, ambience); also a ``normal`` clip itself.

Written rules (each source file has exactly one label; a rule never depends on the game event
that played the sound, only on what a listener at home would hear):

1. **Vocalisations of pain and fear** are labelled by how they sound. Screams, death cries and
   cries of pain (ow, ouch, argh, a hit's yelp) are ``crime``. Groans, moans, coughs, gasps,
   choking, drowning and laboured breathing are ``medical``. No vocalisation is ``accident`` or a
   negative: a fall is heard as its impact (thuds, a body hitting the ground, collapse), and an
   ambiguous grunt (hedgewars ``Ooff``, cube2 and freedink grunts, nexuiz ``fall``) is not used.
2. **Banging**: metal clangs, anvils, a slammed door and knocking, arranged into repeated
   banging (``scenes.arrange_hits``), are ``trapped``. Hammering and construction (DIY, building
   sites) are negatives: they are what a home sounds like on a Saturday.
3. **Electric** is arcing, sparking, zapping and shorting. A steady hum (mains, transformers,
   fans, machines) is a background, and thunder is a negative: neither is an electrical fault.
4. **Speech** is an emergency only when its words are one (``help``: "I need help"; TTS distress
   phrases). Shouted and excited everyday speech (game call-outs, taunts, announcers, "take
   cover") is a background; TTS of every class goes through the same processing
   (``build._event_audio``), so shouting alone is never a cue.
5. **Alarms and beeps that are not ISO 8201 / UL 2034 patterns** (game alerts, klaxons, system
   sounds, phone rings, timers) are negatives for ``fire`` and ``gas``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from hearo.data.label_rule import BACKGROUND, NEGATIVE, LabelRule
from hearo.data.label_rules import LABEL_RULES

__all__ = ["BACKGROUND", "LABEL_RULES", "NEGATIVE", "LabelRule", "label_for"]


def label_for(package: str, member: str) -> str | None:
    """The label of ``member`` (a path inside ``package``, "./" optional), or None if unused."""
    member = member.removeprefix("./")
    for rule in LABEL_RULES:
        if rule.package == package and fnmatchcase(member, rule.glob):
            return rule.label
    return None
