"""Device tokens: issuing, hashing, and authenticating requests and WebSocket sessions.

A device token is 256 random bits (URL-safe text), shown once at registration or
rotation. Only its SHA-256 is stored, so a leaked database yields no usable token; a
token of that entropy needs no slow hash.

Two ways in, one rule:

* HTTP routes declare ``device: CurrentDevice`` and read ``Authorization: Bearer <token>``;
  a missing or unknown token is a 401 ``{"detail": {"code", "message"}}``.
* The WebSocket handler takes the token from its first ``start`` message (browsers cannot
  set headers on a WebSocket) and calls ``authenticate_token(db, token)``.

Both need the process's :class:`~shared.db.Database` at ``app.state.db``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Collection
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from shared.db import Database, Device
from shared.settings import new_token

TOKEN_BYTES = 32
# token_urlsafe(32) is 43 characters; anything far longer is not ours and is not hashed.
MAX_TOKEN_LENGTH = 256


def issue_token() -> tuple[str, str]:
    """A fresh device token and the hash to store: ``(token, token_hash)``."""
    token = new_token(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticate_token(db: Database, token: str) -> Device | None:
    """The device holding ``token`` (contacts loaded, detached from any session), or None.

    The lookup is by hash, so the database never compares the secret itself; the final
    constant-time comparison keeps that true whatever index the database uses.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    token_hash = hash_token(token)
    async with db.session() as session:
        device = await session.scalar(
            select(Device)
            .where(Device.token_hash == token_hash)
            .options(selectinload(Device.contacts))
        )
    if device is None or not hmac.compare_digest(device.token_hash, token_hash):
        return None
    return device


async def current_token_hashes(db: Database, device_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The stored token hash of each of ``device_ids`` that still exists (a deleted device is
    absent): what open sessions are checked against (``services.gateway.revocation``)."""
    if not device_ids:
        return {}
    async with db.session() as session:
        rows = await session.execute(select(Device.id, Device.token_hash).where(Device.id.in_(list(device_ids))))
    return {device_id: token_hash for device_id, token_hash in rows.all()}


def get_db(request: Request) -> Database:
    """The app's database: the gateway's ``create_app`` sets ``app.state.db``."""
    db: Database = request.app.state.db
    return db


DatabaseDep = Annotated[Database, Depends(get_db)]

_bearer = HTTPBearer(auto_error=False, description="The device token issued at registration.")


def unauthorized(code: str, message: str) -> HTTPException:
    """The 401 every device route answers with: ``{"detail": {"code", "message"}}``."""
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail={"code": code, "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


async def current_device(
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Device:
    """The device named by the request's bearer token; 401 when there is none or it is unknown."""
    if credentials is None:
        raise unauthorized(
            "missing_token", "send the device token as 'Authorization: Bearer <token>'"
        )
    device = await authenticate_token(db, credentials.credentials)
    if device is None:
        raise unauthorized(
            "invalid_token", "the device token is not valid (it may have been rotated or revoked)"
        )
    return device


CurrentDevice = Annotated[Device, Depends(current_device)]
