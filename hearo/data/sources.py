"""The allow-list: the only Debian packages a data build may download (``../shared/data/sources.md``).

Other Debian sound packages are reserved for independent evaluation, so asking for one is an
error, not a warning. Licences are the package-level summary from each package's
``/usr/share/doc/<pkg>/copyright``; the per-file licence is in that file, which the build keeps
beside the data set.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ALLOWED_PACKAGES", "DEFAULT_PACKAGES", "DisallowedPackageError", "check_packages"]

ALLOWED_PACKAGES: dict[str, str] = {
    "0ad-data": "CC-BY-SA-3.0",
    "wesnoth-1.16-data": "GPL-2+",
    "wesnoth-1.16-music": "GPL-2+",
    "hedgewars-data": "GPL-2 / GFDL-1.3 (voice packs)",
    "redeclipse-data": "CC-BY-SA / CC-BY / CC0 (per file)",
    "cube2-data": "ZLIB / CC-BY-SA (per file)",
    "supertuxkart-data": "GPL-3+ / CC-BY-SA-3.0 (per file)",
    "supertux-data": "GPL-2+ / GPL-3+ / CC-BY-SA (per file)",
    "megaglest-data": "CC-BY-SA-3.0",
    "warmux-data": "GPL-2+",
    "btanks-data": "GPL-2+ / LGPL-2.1+",
    "blobwars-data": "CC-BY-3.0 / CC-BY-SA-3.0 / GPL-2+ / public domain (per file)",
    "freedink-data": "GPL-3+ / free (per file)",
    "freedroidrpg-data": "GPL-2+ / GPL-3 / CC0 (per file)",
    "widelands-data": "GPL-2+",
    "7kaa-data": "GPL-2+",
    "colobot-common-sounds": "GPL-3+",
    "pingus-data": "GPL-3+",
    "asterisk-core-sounds-es-wav": "CC-BY-SA-3.0",
    "asterisk-core-sounds-fr-wav": "CC-BY-SA-3.0",
    "asterisk-core-sounds-it-wav": "CC-BY-SA-3.0",
    "asterisk-core-sounds-ru-wav": "CC-BY-SA-3.0",
    "asterisk-prompt-es-co": "GPL-2",
    "asterisk-prompt-fr-armelle": "GPL-2",
    "asterisk-prompt-it-menardi-wav": "CC-BY-SA-3.0-IT (Marco Menardi and Paola Dal Zot, www.voip.ammdomus.it)",
    "nexuiz-data": "GPL-2+ (Alientrap, Lee Vermeulen)",
    "openttd-opensfx": "see its copyright file (unused)",
    "bzflag-data": "LGPL-2.1 or MPL",
    "neverball-data": "see its copyright file (unused)",
    "extremetuxracer-data": "GPL-2+ / CC0 (per file)",
    "chromium-bsu-data": "Clarified-Artistic / Expat (per file)",
    "trigger-rally-data": "see its copyright file (unused)",
    "xmoto-data": "GPL-2+ / BSD / MIT (per file)",
    "gnome-audio": "CC-BY-SA-2.0 / CC-BY-3.0 (per file)",
    "deepin-sound-theme": "GPL-3+",
    "sound-icons": "GPL-2+",
}

# Every allow-listed package that has label rules (about 5 GB of .debs). Left out: the
# asterisk-prompt-{es-co,fr-armelle} (headerless GSM), colobot-common-sounds (unnamed sounds)
# pingus-data (a few tiny cartoon sounds), openttd-opensfx (one .cat container of its own format),
# and neverball-data and trigger-rally-data (no sound files found in the .debs surveyed).
DEFAULT_PACKAGES: tuple[str, ...] = (
    "hedgewars-data",
    "wesnoth-1.16-data",
    "blobwars-data",
    "warmux-data",
    "freedink-data",
    "supertux-data",
    "btanks-data",
    "freedroidrpg-data",
    "redeclipse-data",
    "cube2-data",
    "megaglest-data",
    "widelands-data",
    "7kaa-data",
    "supertuxkart-data",
    "0ad-data",
    "wesnoth-1.16-music",
    "asterisk-core-sounds-es-wav",
    "asterisk-core-sounds-fr-wav",
    "asterisk-core-sounds-it-wav",
    "asterisk-core-sounds-ru-wav",
    "asterisk-prompt-it-menardi-wav",
    "nexuiz-data",
    "bzflag-data",
    "chromium-bsu-data",
    "extremetuxracer-data",
    "xmoto-data",
    "gnome-audio",
    "deepin-sound-theme",
    "sound-icons",
)


class DisallowedPackageError(ValueError):
    """A package outside the allow-list was asked for."""


def check_packages(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` in order without repeats, or DisallowedPackageError naming every refused one."""
    wanted = tuple(dict.fromkeys(names))
    refused = [name for name in wanted if name not in ALLOWED_PACKAGES]
    if refused:
        raise DisallowedPackageError(
            f"not on the data allow-list (../shared/data/sources.md): {', '.join(refused)}; "
            f"allowed: {', '.join(sorted(ALLOWED_PACKAGES))}"
        )
    return wanted
