"""The owner's duress code: what it may be, how it is kept, and which incidents it applies to.

A device owner may set a duress PIN or phrase (``PATCH /v1/devices/me``, ``duress_code``).
Cancelling an incident with it looks exactly like an ordinary cancel on the device, but the
report goes to the police silently, marked as duress (:mod:`shared.incidents.duress_cancel`;
the policy in plain words: docs/evidence.md#a-cancel-under-duress).

* **What a code may be** (:func:`check_code`): after :func:`normalise_code` (NFKC, case
  folded, white space collapsed and trimmed), a PIN of 4 to 12 digits or a phrase of at least
  two words.
* **How it is kept** (:func:`hash_code`, :func:`verify_code`): only a salted scrypt hash, its
  parameters in the string (``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>``), compared in constant
  time. Never logged, echoed, exported or shown as set.
* **Where it applies** (:func:`duress_applies`): ``crime`` and ``help``. Everywhere else a
  silent police report would endanger the people who come: a fire, gas or electrical scene
  needs 119 warned and equipped, and a fall, a medical emergency or someone trapped needs
  119, not police told to approach silently. There the code is an ordinary cancel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata

# Duress applies to these classes only (the module docstring says why).
DURESS_CLASSES = frozenset({"crime", "help"})
# A duress report goes where a crime is reported (112 by default), whatever the class heard.
DURESS_ROUTE_CLASS = "crime"
# The trigger recorded on the incident and carried by the report.
DURESS_TRIGGER = "duress"
# What the dispatcher reads first (the report's ``duress.note``), in both languages.
DURESS_NOTE = {
    "en": "The person cancelled on their device with their duress code: they may be under threat from someone "
          "with them. Their device shows the report as cancelled. Approach silently; do not call or message the "
          "device.",
    "ko": "대상자가 기기에서 강요 신호용 코드로 신고를 취소했습니다. 곁에 있는 사람에게 위협받고 있을 수 있습니다. "
          "대상자의 기기에는 신고가 취소된 것으로 표시됩니다. 조용히 접근하고, 기기로 전화나 문자를 하지 마십시오.",
}  # fmt: skip

MAX_CODE_LENGTH = 200
_PIN = re.compile(r"[0-9]{4,12}")
# scrypt at 2**15 × 8: 32 MiB and some 90 ms a try, so a stolen hash of a short PIN costs time
# per guess, while a cancel waits a fraction of a second.
_LOG2_N, _R, _P = 15, 8, 1
_SALT_BYTES, _KEY_BYTES = 16, 32
_MAXMEM = 1 << 26
# Verified when no code is set, so a cancel with a code takes as long whether one is set or not.
_NO_HASH_SET = "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def normalise_code(code: str) -> str:
    """The code as compared: NFKC (full-width digits are digits), case folded, runs of white
    space made one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", code).casefold().split())


def check_code(code: str) -> str:
    """``code`` normalised, when it is a PIN of 4 to 12 digits or a phrase of two words or
    more; ValueError (never quoting the code) otherwise."""
    if len(code) > MAX_CODE_LENGTH:
        raise ValueError(f"the duress code must be at most {MAX_CODE_LENGTH} characters")
    normal = normalise_code(code)
    if "\x00" in normal:
        raise ValueError("the duress code cannot contain NUL")
    if _PIN.fullmatch(normal) or len(normal.split(" ")) >= 2:
        return normal
    raise ValueError("the duress code must be a PIN of 4 to 12 digits or a phrase of at least two words")


def hash_code(code: str) -> str:
    """A new salted scrypt hash of ``code`` (checked and normalised first; ValueError as
    :func:`check_code`)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(check_code(code), salt, _LOG2_N, _R, _P)
    return "$".join(("scrypt", str(_LOG2_N), str(_R), str(_P), _b64(salt), _b64(key)))


def verify_code(code: str, stored: str | None) -> bool:
    """Whether ``code`` is the one ``stored`` was made from (False for no or a malformed hash).

    Takes one scrypt whatever is stored, so the time of a cancel with a code does not tell
    whether a code is set; compared in constant time."""
    try:
        scheme, log2_n, r, p, salt, key = (stored or _NO_HASH_SET).split("$")
        expected = base64.b64decode(key, validate=True)
        actual = _scrypt(normalise_code(code), base64.b64decode(salt, validate=True), int(log2_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and stored is not None and hmac.compare_digest(actual, expected)


def duress_applies(class_key: str) -> bool:
    """Whether a cancel of a ``class_key`` incident with the duress code reports it silently."""
    return class_key in DURESS_CLASSES


def _scrypt(normal: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    if not (10 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise ValueError("scrypt parameters out of range")
    return hashlib.scrypt(
        normal.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
