"""The /v1/households routes and a device's room, on SQLite and on PostgreSQL, through ASGI."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends
from sqlalchemy import func, select

from services.gateway import households_api
from services.gateway.rate_limit import RateLimit, RequestLimits, limit_rest
from shared.db import Database, Device
from shared.db.models import Household
from shared.household import LocalActivityBoard, WindowSummary
from tests.devices_support import devices_app, http_client

CODE = re.compile(r"^[A-Z2-7]{4}(-[A-Z2-7]{4}){5}$")


class Home:
    def __init__(self, http: httpx.AsyncClient, db: Database, board: LocalActivityBoard) -> None:
        self.http, self.db, self.board = http, db, board

    async def device(self, name: str = "Kim Soon-ja") -> tuple[str, dict[str, str]]:
        body = {
            "profile": {"name": name, "birth_year": 1948},
            "consent_recording": True, "consent_location": False, "consent_share_profile": True,
        }  # fmt: skip
        response = await self.http.post("/v1/devices", json=body)
        assert response.status_code == 201, response.text
        return response.json()["device_id"], {"Authorization": f"Bearer {response.json()['token']}"}

    async def create(self, auth: dict[str, str], name: str = "Kim family") -> dict[str, Any]:
        response = await self.http.post("/v1/households", json={"name": name}, headers=auth)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def home(db: Database) -> AsyncIterator[Home]:
    app = devices_app(db, RequestLimits(None, None, None, RateLimit(burst=3, per_minute=1)))
    app.include_router(households_api.router, dependencies=[Depends(limit_rest)])
    app.state.household_board = board = LocalActivityBoard()
    async with http_client(app) as http:
        yield Home(http, db, board)


async def test_a_device_creates_a_household_and_gets_its_join_code_once(home: Home) -> None:
    device, auth = await home.device()
    response = await home.http.post("/v1/households", json={"name": "Kim family"}, headers=auth)
    assert response.status_code == 201 and response.headers["cache-control"] == "no-store"
    created = response.json()
    assert CODE.match(created["join_code"]) and created["name"] == "Kim family"
    assert created["members"] == [
        {"device_id": device, "name": "Kim Soon-ja", "room": None, "this_device": True, "listening": False}
    ]
    async with home.db.session() as session:
        stored = await session.get_one(Household, uuid.UUID(created["id"]))
    # Only the SHA-256 of the code (without its dashes) is kept.
    assert stored.join_code_hash == hashlib.sha256(created["join_code"].replace("-", "").encode()).hexdigest()
    me = (await home.http.get("/v1/households/me", headers=auth)).json()
    assert "join_code" not in me and me["id"] == created["id"]
    assert (await home.http.get("/v1/devices/me", headers=auth)).json()["household_id"] == created["id"]


async def test_other_devices_join_with_the_code_as_a_person_types_it(home: Home) -> None:
    first, first_auth = await home.device()
    created = await home.create(first_auth)
    second, second_auth = await home.device("Kim Min-ji")
    typed = " ".join(created["join_code"].lower().split("-"))
    joined = await home.http.post("/v1/households/join", json={"join_code": typed}, headers=second_auth)
    assert joined.status_code == 200, joined.text
    assert {m["device_id"]: m["this_device"] for m in joined.json()["members"]} == {first: False, second: True}
    again = await home.http.post("/v1/households/join", json={"join_code": created["join_code"]}, headers=second_auth)
    assert again.status_code == 200 and len(again.json()["members"]) == 2
    _, stranger = await home.device("Stranger")
    wrong = await home.http.post("/v1/households/join", json={"join_code": "AAAA-BBBB"}, headers=stranger)
    assert wrong.status_code == 404 and wrong.json()["detail"]["code"] == "unknown_join_code"


async def test_a_device_belongs_to_one_household_at_a_time(home: Home) -> None:
    _, auth = await home.device()
    await home.create(auth)
    _, other = await home.device("Neighbour")
    theirs = await home.create(other, "Next door")
    again = await home.http.post("/v1/households", json={"name": "Second home"}, headers=auth)
    assert again.status_code == 409 and again.json()["detail"]["code"] == "in_household"
    join = await home.http.post("/v1/households/join", json={"join_code": theirs["join_code"]}, headers=auth)
    assert join.status_code == 409 and join.json()["detail"]["code"] == "in_household"


async def test_the_room_is_set_on_the_device_and_shown_to_the_household(home: Home) -> None:
    _, auth = await home.device()
    await home.create(auth)
    patched = await home.http.patch("/v1/devices/me", json={"room": "kitchen"}, headers=auth)
    assert patched.status_code == 200 and patched.json()["room"] == "kitchen"
    assert (await home.http.get("/v1/households/me", headers=auth)).json()["members"][0]["room"] == "kitchen"
    for blank in ("", "   ", "x" * 101):
        refused = await home.http.patch("/v1/devices/me", json={"room": blank}, headers=auth)
        assert refused.status_code == 422, blank
    cleared = await home.http.patch("/v1/devices/me", json={"room": None}, headers=auth)
    assert cleared.status_code == 200 and cleared.json()["room"] is None


async def test_leaving_and_the_last_to_leave_deletes_the_household(home: Home) -> None:
    _, first = await home.device()
    created = await home.create(first)
    _, second = await home.device("Kim Min-ji")
    await home.http.post("/v1/households/join", json={"join_code": created["join_code"]}, headers=second)
    left = await home.http.delete("/v1/households/me", headers=first)
    assert left.status_code == 200 and left.json() == {"household_id": created["id"], "deleted": False}
    assert (await home.http.get("/v1/households/me", headers=first)).json()["detail"]["code"] == "no_household"
    assert len((await home.http.get("/v1/households/me", headers=second)).json()["members"]) == 1
    last = await home.http.delete("/v1/households/me", headers=second)
    assert last.json() == {"household_id": created["id"], "deleted": True}
    async with home.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Household)) == 0
        assert await session.scalar(select(func.count()).where(Device.household_id.is_not(None))) == 0
    gone = await home.http.post("/v1/households/join", json={"join_code": created["join_code"]}, headers=first)
    assert gone.status_code == 404
    assert (await home.http.delete("/v1/households/me", headers=first)).status_code == 404


async def test_an_erased_device_leaves_and_the_last_one_takes_the_household_with_it(home: Home) -> None:
    _, first = await home.device()
    created = await home.create(first)
    _, second = await home.device("Kim Min-ji")
    await home.http.post("/v1/households/join", json={"join_code": created["join_code"]}, headers=second)
    assert (await home.http.delete("/v1/devices/me", headers=first)).status_code == 200
    assert len((await home.http.get("/v1/households/me", headers=second)).json()["members"]) == 1
    assert (await home.http.delete("/v1/devices/me", headers=second)).status_code == 200
    async with home.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Household)) == 0


async def test_joining_is_rate_limited_per_address(home: Home) -> None:
    _, auth = await home.device()
    answers = [
        await home.http.post("/v1/households/join", json={"join_code": f"GUESS-{i}"}, headers=auth) for i in range(4)
    ]
    assert [a.status_code for a in answers] == [404, 404, 404, 429]
    assert answers[-1].json()["detail"]["code"] == "rate_limited" and int(answers[-1].headers["retry-after"]) >= 1


async def test_a_member_is_listening_while_its_windows_reach_the_board(home: Home) -> None:
    first, auth = await home.device()
    created = await home.create(auth)
    second, other = await home.device("Kim Min-ji")
    await home.http.post("/v1/households/join", json={"join_code": created["join_code"]}, headers=other)
    home.board.post(uuid.UUID(created["id"]), WindowSummary(second, time.time(), -40.0))
    home.board.post(uuid.UUID(created["id"]), WindowSummary(first, time.time() - 20.0, -40.0))  # a while ago
    members = (await home.http.get("/v1/households/me", headers=auth)).json()["members"]
    assert {m["device_id"]: m["listening"] for m in members} == {first: False, second: True}


async def test_household_routes_need_a_device_token(home: Home) -> None:
    assert (await home.http.get("/v1/households/me")).status_code == 401
    refused = await home.http.post("/v1/households", json={"name": "x"}, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
