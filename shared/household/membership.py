"""Creating, joining and leaving a household: the devices of one home.

A household is made by one of its devices, which gets the **join code** once: 120 random bits
written as 24 letters and digits in groups of four (``K7QM-2XD4-...``), easy to read out and
type on the next device, hopeless to guess. Only its SHA-256 is stored, as with device
tokens: a copy of the database joins nobody. Dashes, spaces and case do not matter when the
code is typed. A device belongs to at most one household; it leaves before joining another.
When the last device leaves (or is erased), the household is deleted.

Each write takes the household's row first (``UPDATE households ... WHERE ...``: the row lock
on PostgreSQL, the database lock on SQLite), so a device joining while the last one leaves
either joins before the household is deleted or finds no household.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from shared.db import Database, Device
from shared.db.models import Household

JOIN_CODE_BYTES = 15  # 120 bits: 24 base32 characters
_NOT_CODE = re.compile(r"[\s-]+")


class AlreadyInHousehold(Exception):
    """The device belongs to another household; it must leave that one first."""

    def __init__(self, household_id: uuid.UUID) -> None:
        super().__init__("this device already belongs to a household; leave it first")
        self.household_id = household_id


class UnknownJoinCode(Exception):
    """No household has this join code."""


@dataclass(frozen=True)
class Member:
    """A device of the household: its owner's name and the room it listens in."""

    device_id: uuid.UUID
    name: str
    room: str | None


@dataclass(frozen=True)
class HouseholdView:
    """A household and its devices, in the order they were registered."""

    id: uuid.UUID
    name: str
    created_at: datetime
    members: list[Member]


def new_join_code() -> str:
    """A fresh join code: 24 base32 characters in groups of four."""
    text = base64.b32encode(secrets.token_bytes(JOIN_CODE_BYTES)).decode()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def join_code_hash(code: str) -> str:
    """The stored form of a join code: hex SHA-256 of its characters, without dashes, spaces or case."""
    return hashlib.sha256(_NOT_CODE.sub("", code).upper().encode()).hexdigest()


async def create_household(db: Database, device_id: uuid.UUID, name: str) -> tuple[HouseholdView, str]:
    """A new household named ``name`` with the device as its first member, and its join code
    (returned only here). Raises :class:`AlreadyInHousehold`, or LookupError for no device."""
    code = new_join_code()
    household = Household(name=name, join_code_hash=join_code_hash(code))
    async with db.session() as session:
        device = await session.scalar(select(Device).where(Device.id == device_id).with_for_update())
        if device is None:
            raise LookupError(f"no device {device_id}")
        if device.household_id is not None:
            raise AlreadyInHousehold(device.household_id)
        session.add(household)
        await session.flush()
        device.household_id = household.id
        await session.flush()
        view = await _view(session, household.id)
    return view, code


async def join_household(db: Database, device_id: uuid.UUID, code: str) -> HouseholdView:
    """Add the device to the household of ``code`` (again is harmless). Raises
    :class:`UnknownJoinCode`, :class:`AlreadyInHousehold`, or LookupError for no device."""
    async with db.session() as session:
        household_id = await _lock(session, Household.join_code_hash == join_code_hash(code))
        if household_id is None:
            raise UnknownJoinCode("no household has this join code")
        device = await session.get(Device, device_id, populate_existing=True)
        if device is None:
            raise LookupError(f"no device {device_id}")
        if device.household_id not in (None, household_id):
            raise AlreadyInHousehold(device.household_id)
        device.household_id = household_id
        await session.flush()
        return await _view(session, household_id)


async def leave_household(db: Database, device_id: uuid.UUID) -> tuple[uuid.UUID, bool] | None:
    """Take the device out of its household: ``(household_id, deleted)``, ``deleted`` when it
    was the last member (the household is gone); None when it had none."""
    async with db.session() as session:
        mine = select(Device.household_id).where(Device.id == device_id).scalar_subquery()
        household_id = await _lock(session, Household.id == mine)
        if household_id is None:
            return None
        await session.execute(
            update(Device).where(Device.id == device_id).values(household_id=None).execution_options(
                synchronize_session=False
            )
        )
        return household_id, await delete_if_empty(session, household_id)


async def delete_if_empty(session: AsyncSession, household_id: uuid.UUID) -> bool:
    """Delete the household when no device is left in it (the caller's transaction); whether it did."""
    members = select(Device.id).where(Device.household_id == household_id).exists()
    deleted = await session.execute(
        delete(Household).where(Household.id == household_id, ~members).returning(Household.id)
    )
    return deleted.first() is not None


async def read_household(db: Database, device_id: uuid.UUID) -> HouseholdView | None:
    """The device's household with its members, or None."""
    async with db.session() as session:
        household_id = await session.scalar(select(Device.household_id).where(Device.id == device_id))
        return None if household_id is None else await _view(session, household_id)


async def _lock(session: AsyncSession, which: ColumnElement[bool]) -> uuid.UUID | None:
    """The id of the household ``which`` names, its row taken for this transaction; None: none."""
    row = (
        await session.execute(
            update(Household).where(which).values(name=Household.name).returning(Household.id)
            .execution_options(synchronize_session=False)
        )
    ).first()
    return None if row is None else row[0]


async def _view(session: AsyncSession, household_id: uuid.UUID) -> HouseholdView:
    household = await session.get_one(Household, household_id)
    members = await session.execute(
        select(Device.id, Device.owner_name, Device.room)
        .where(Device.household_id == household_id)
        .order_by(Device.created_at, Device.id)
    )
    return HouseholdView(
        household.id, household.name, household.created_at, [Member(d, name, room) for d, name, room in members]
    )
