"""Request and response bodies of the device routes (``/v1/devices``).

Inputs refuse unknown fields, so a misspelt consent flag is a 422 rather than a silent
default. Inputs are strict: a number must be a JSON number and a consent flag a JSON boolean
(consent is never inferred from ``"yes"`` or ``1``). Every rule a field has is in its JSON
schema too (``pattern``, bounds, ``const``), so the OpenAPI schema refuses what the API
refuses (``tests/integration/test_openapi_contract.py``); the one rule it cannot state is that
a location needs ``consent_location`` (stored consent, for ``PATCH``).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from shared.db import Device
from shared.device_modes import DeviceProfile, ListeningMode
from shared.incidents.duress import MAX_CODE_LENGTH, check_code

MAX_CONTACTS = 10
# Alone mode's inactivity span: from ten minutes to a week.
MIN_INACTIVITY_S = 600
MAX_INACTIVITY_S = 7 * 86400
# The oldest verified human lived to 122.
MAX_AGE_YEARS = 125

# What Python's ``\s`` matches, spelt out: a schema ``pattern`` is read by other regex engines
# (ECMA's and Rust's ``\s`` differ from Python's), and must refuse exactly what we refuse.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No text may hold NUL: PostgreSQL cannot store it (the insert would fail, a 500).
NO_NUL = r"^[^\x00]*$"
# Text that is not only white space (names, relations, addresses), and without NUL.
NOT_BLANK = f"^[^\\x00]*[^{_SPACE}\\x00][^\\x00]*$"
_PHONE_SEPARATORS = re.compile(f"[{_SPACE}().-]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# "+", a digit 1-9, then 6 to 14 digits, with separators anywhere: what ``_e164`` accepts.
_SEP = f"[{_SPACE}().-]*"
_PHONE_PATTERN = f"^{_SEP}\\+{_SEP}[1-9](?:{_SEP}[0-9]){{6,14}}{_SEP}$"
_EMAIL_CORE = f"[^@{_SPACE}\\x00]+@[^@{_SPACE}\\x00]+\\.[^@{_SPACE}\\x00]+"
_EMAIL = re.compile(_EMAIL_CORE)

_NO_RECORDING = (
    "consent_recording must be true: Hear-o cannot listen without the owner's consent to recording"
)


class _Input(BaseModel):
    # Text is kept as given (no trimming): a trimmed length would differ from the schema's.
    model_config = ConfigDict(extra="forbid", strict=True)


def birth_years() -> tuple[int, int]:
    """The birth years a profile may have this year: ``(earliest, latest)``."""
    this_year = datetime.now(timezone.utc).year
    return this_year - MAX_AGE_YEARS, this_year


def _birth_year_bounds(schema: dict[str, Any]) -> None:
    # Computed when the schema is, like the validator's at each request.
    schema["minimum"], schema["maximum"] = birth_years()


class Profile(_Input):
    """The person the device protects, as an agency will see them (with consent)."""

    name: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    birth_year: int = Field(description=f"within the last {MAX_AGE_YEARS} years", json_schema_extra=_birth_year_bounds)
    medical_notes: str | None = Field(
        default=None, max_length=4000, pattern=NO_NUL, description="conditions, medication, allergies"
    )

    @field_validator("birth_year")
    @classmethod
    def _plausible_birth_year(cls, year: int) -> int:
        earliest, latest = birth_years()
        if not earliest <= year <= latest:
            raise ValueError(f"birth_year must be between {earliest} and {latest}")
        return year


class Location(_Input):
    """A WGS 84 position with its accuracy radius in metres."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(ge=0, le=100_000)


class LocationOut(Location):
    updated_at: datetime


class Contact(_Input):
    """Someone to tell when the owner is in trouble; ``phone`` is stored as E.164."""

    name: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    relation: str = Field(min_length=1, max_length=100, pattern=NOT_BLANK, examples=["daughter", "neighbour"])
    phone: str = Field(examples=["+82 10 1234 5678"], json_schema_extra={"pattern": _PHONE_PATTERN})
    webhook_url: HttpUrl | None = Field(default=None, max_length=2000)
    email: str | None = Field(default=None, max_length=254, json_schema_extra={"pattern": f"^{_EMAIL_CORE}$"})

    @field_validator("phone")
    @classmethod
    def _e164(cls, phone: str) -> str:
        digits = _PHONE_SEPARATORS.sub("", phone)
        if not _E164.fullmatch(digits):
            raise ValueError(
                "phone must be an international number: '+', country code, then the number "
                "(7 to 15 digits in all), e.g. +82 10 1234 5678"
            )
        return digits

    @field_validator("email")
    @classmethod
    def _email(cls, email: str | None) -> str | None:
        if email is not None and not _EMAIL.fullmatch(email):
            raise ValueError("email must look like name@example.org")
        return email


class DeviceRegistration(_Input):
    """``POST /v1/devices``.

    ``consent_recording`` must be true; a location needs ``consent_location``.
    """

    profile: Profile
    address: str | None = Field(default=None, min_length=1, max_length=500, pattern=NOT_BLANK)
    location: Location | None = None
    contacts: list[Contact] = Field(default_factory=list, max_length=MAX_CONTACTS)
    consent_recording: StrictBool = Field(json_schema_extra={"const": True})
    consent_location: StrictBool
    consent_share_profile: StrictBool

    @field_validator("consent_recording")
    @classmethod
    def _recording_required(cls, consent: bool) -> bool:
        if not consent:
            raise ValueError(_NO_RECORDING)
        return consent

    @model_validator(mode="after")
    def _location_needs_consent(self) -> DeviceRegistration:
        if self.location is not None and not self.consent_location:
            raise ValueError("a location needs consent_location to be true")
        return self


class DeviceUpdate(_Input):
    """``PATCH /v1/devices/me``: each field present replaces the stored one.

    ``address``, ``location``, ``duress_code`` and ``room`` may be null (cleared); the others may not.
    Consent to recording cannot be withdrawn here: deregistering the device is how it is
    withdrawn. ``duress_code`` is stored only as a slow hash and never shown again, not even
    whether one is set (:mod:`shared.incidents.duress`).
    """

    # ``SkipJsonSchema[None]``: absent is allowed, null is not (``_no_null_for_required``).
    profile: Profile | SkipJsonSchema[None] = None
    address: str | None = Field(default=None, min_length=1, max_length=500, pattern=NOT_BLANK)
    location: Location | None = None
    contacts: Annotated[list[Contact], Field(max_length=MAX_CONTACTS)] | SkipJsonSchema[None] = None
    room: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=NOT_BLANK, examples=["kitchen"],
        description="Where in the home the device listens: a report says where a sound was heard (docs/evidence.md)",
    )  # fmt: skip
    # ``profile`` is the owner's; this is the setting's (devices.profile), named apart.
    device_profile: Literal["home", "daycare"] | SkipJsonSchema[None] = Field(
        default=None, description="What the device listens for besides the nine classes: home, or daycare (a child "
        "crying with adult shouting and blows raises a child_safety incident, the staff told first; docs/daycare.md)",
    )  # fmt: skip
    listening_mode: Literal["standard", "away", "alone"] | SkipJsonSchema[None] = Field(
        default=None, description="What is abnormal besides the nine classes: standard (nothing), away (any loud, "
        "sudden or unusual sound) or alone (impacts, shouting, a long silence); docs/anomaly.md",
    )  # fmt: skip
    inactivity_span_s: int | None = Field(
        default=None, ge=MIN_INACTIVITY_S, le=MAX_INACTIVITY_S,
        description="Alone mode: seconds without a sound of activity that are a concern (null: the default, 12 h)",
    )  # fmt: skip
    spoken_languages: Annotated[list[Literal["ko", "en"]], Field(max_length=2)] | SkipJsonSchema[None] = Field(
        default=None, examples=[["ko", "en"]], description="The languages whose spoken distress phrases the device "
        "listens for ('살려주세요', 'help me'; docs/spoken.md): ko, en, both, or [] for none",
    )  # fmt: skip
    consent_recording: StrictBool | SkipJsonSchema[None] = Field(default=None, json_schema_extra={"const": True})
    consent_location: StrictBool | SkipJsonSchema[None] = None
    consent_share_profile: StrictBool | SkipJsonSchema[None] = None
    duress_code: str | None = Field(
        default=None, min_length=4, max_length=MAX_CODE_LENGTH, pattern=NO_NUL,
        description="Write-only: a PIN of 4 to 12 digits or a phrase of at least two words (compared without "
        "case or extra spaces); null removes it. Cancelling a crime or help incident with it reports it to the "
        "police silently while the device shows it cancelled (docs/evidence.md). Never returned.",
        json_schema_extra={"writeOnly": True},
    )  # fmt: skip

    @field_validator("duress_code")
    @classmethod
    def _duress_code(cls, code: str | None) -> str | None:
        if code is not None:
            check_code(code)
        return code

    @field_validator("spoken_languages")
    @classmethod
    def _languages_once(cls, languages: list[str] | None) -> list[str] | None:
        if languages is not None and len(set(languages)) != len(languages):
            raise ValueError("each language once")
        return languages

    @field_validator("consent_recording")
    @classmethod
    def _recording_kept(cls, consent: bool | None) -> bool | None:
        if consent is False:
            raise ValueError(f"{_NO_RECORDING}; to withdraw it, DELETE /v1/devices/me")
        return consent

    @model_validator(mode="after")
    def _no_null_for_required(self) -> DeviceUpdate:
        nullable = {"address", "location", "duress_code", "room", "inactivity_span_s"}
        nulled = sorted(
            name for name in self.model_fields_set - nullable if getattr(self, name) is None
        )
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null")
        return self


class DeviceOut(BaseModel):
    """A device as its owner sees it: everything but the token and the duress code (not even
    whether one is set: whoever makes the owner open the settings must not learn it)."""

    id: uuid.UUID
    profile: Profile
    address: str | None
    location: LocationOut | None
    contacts: list[Contact]
    consent_recording: bool
    consent_location: bool
    consent_share_profile: bool
    consents_updated_at: datetime
    token_issued_at: datetime
    created_at: datetime
    updated_at: datetime
    room: str | None = None  # where in the home it listens
    household_id: uuid.UUID | None = None  # its household (``GET /v1/households/me``), if any
    device_profile: DeviceProfile = DeviceProfile.HOME  # home or daycare (docs/daycare.md)
    listening_mode: ListeningMode = ListeningMode.STANDARD  # standard, away or alone (docs/anomaly.md)
    inactivity_span_s: int | None = None  # alone mode's span (null: the default)
    spoken_languages: list[str] = ["ko", "en"]  # whose distress phrases it listens for (docs/spoken.md)
    # The anomaly model's state: learning since, share of the learning period heard, active version, budget.
    anomaly: dict[str, Any] | None = None


class DeviceCredentials(BaseModel):
    """The device id and its bearer token, returned once; store the token on the device."""

    device_id: uuid.UUID
    token: str


def device_out(device: Device) -> DeviceOut:
    """The API view of a device row (its contacts must be loaded)."""
    location = None
    if (
        device.latitude is not None
        and device.longitude is not None
        and device.location_accuracy_m is not None
        and device.location_updated_at is not None
    ):
        location = LocationOut(
            latitude=device.latitude,
            longitude=device.longitude,
            accuracy_m=device.location_accuracy_m,
            updated_at=device.location_updated_at,
        )
    return DeviceOut(
        id=device.id,
        profile=Profile(
            name=device.owner_name,
            birth_year=device.birth_year,
            medical_notes=device.medical_notes,
        ),
        address=device.address,
        location=location,
        contacts=[
            Contact(
                name=c.name,
                relation=c.relation,
                phone=c.phone,
                webhook_url=None if c.webhook_url is None else HttpUrl(c.webhook_url),
                email=c.email,
            )
            for c in device.contacts
        ],
        consent_recording=device.consent_recording,
        consent_location=device.consent_location,
        consent_share_profile=device.consent_share_profile,
        consents_updated_at=device.consents_updated_at,
        token_issued_at=device.token_issued_at,
        created_at=device.created_at,
        updated_at=device.updated_at,
        room=device.room,
        household_id=device.household_id,
        device_profile=device.profile,
        listening_mode=device.listening_mode,
        inactivity_span_s=device.inactivity_span_s,
        spoken_languages=list(device.spoken_languages),
    )
