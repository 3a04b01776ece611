"""`hearo household` and `hearo device room` (hearo/cli_household.py) against a mock gateway."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hearo import cli_household
from hearo.cli import app
from hearo.incident_client import EXIT_AUTH, EXIT_CONNECTION, EXIT_INPUT, EXIT_OK, EXIT_REFUSED

HOUSEHOLD = {
    "id": "5d0c...", "name": "Kim family", "created_at": "2027-01-01T00:00:00+00:00", "join_code": "ABCD-EFGH",
    "members": [
        {"device_id": "a", "name": "Kim Soon-ja", "room": "kitchen", "this_device": True, "listening": True},
        {"device_id": "b", "name": "Kim Min-ji", "room": None, "this_device": False, "listening": False},
    ],
}  # fmt: skip


@dataclass
class MockGateway:
    """What the gateway answers next (status, body), and the requests it got."""

    answers: list[tuple[int, object]] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> MockGateway:
    mock, real = MockGateway(), cli_household.call

    def answer(request: httpx.Request) -> httpx.Response:
        mock.seen.append(request)
        status, body = mock.answers.pop(0)
        return httpx.Response(status, json=body)

    def call(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
        return real(*args, client=httpx.Client(transport=httpx.MockTransport(answer)), **kwargs)

    monkeypatch.setattr(cli_household, "call", call)
    return mock


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--token", "t"])
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_household_and_its_code_once(gateway: MockGateway) -> None:
    gateway.answers.append((201, HOUSEHOLD))
    code, out, err = run("household", "create", "Kim family")
    assert code == EXIT_OK
    assert out.splitlines() == [
        "Kim family (5d0c...)",
        "  Kim Soon-ja: kitchen, listening now  <- this device",
        "  Kim Min-ji: no room set",
        "join code: ABCD-EFGH",
    ]
    assert "shown only once" in err
    request = gateway.seen[0]
    assert (request.method, request.url.path, json.loads(request.content)) == ("POST", "/v1/households", {"name": "Kim family"})
    assert request.headers["authorization"] == "Bearer t"


def test_join_show_and_leave(gateway: MockGateway) -> None:
    gateway.answers += [(200, HOUSEHOLD), (200, HOUSEHOLD), (200, {"household_id": "5d0c...", "deleted": True})]
    assert run("household", "join", "abcd efgh")[0] == EXIT_OK
    code, out, _ = run("household", "show", "--json")
    assert code == EXIT_OK and json.loads(out)["name"] == "Kim family"
    code, out, _ = run("household", "leave")
    assert code == EXIT_OK and out.strip() == "left household 5d0c... (no device was left in it: deleted)"
    assert [(r.method, r.url.path) for r in gateway.seen] == [
        ("POST", "/v1/households/join"), ("GET", "/v1/households/me"), ("DELETE", "/v1/households/me"),
    ]


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "said"),
    [
        (404, {"detail": {"code": "unknown_join_code", "message": "no household has this join code"}}, EXIT_REFUSED,
         "refused: no household has this join code"),
        (401, {"detail": {"code": "invalid_token", "message": "x"}}, EXIT_AUTH, "the device token was refused"),
        (422, {"detail": [{"msg": "String should match pattern"}]}, EXIT_INPUT, "refused: String should match pattern"),
    ],
)
def test_what_the_gateway_refuses_is_said_with_its_exit_code(
    gateway: MockGateway, status: int, body: object, exit_code: int, said: str
) -> None:
    gateway.answers.append((status, body))
    code, _, err = run("household", "join", "WRONG")
    assert code == exit_code and said in err


def test_the_room_is_set_or_cleared_on_the_device(gateway: MockGateway) -> None:
    gateway.answers += [(200, {"room": "kitchen"}), (200, {"room": None})]
    assert run("device", "room", "kitchen")[1].strip() == "room: kitchen"
    assert run("device", "room", "--clear")[1].strip() == "room cleared"
    assert [json.loads(r.content) for r in gateway.seen] == [{"room": "kitchen"}, {"room": None}]
    assert run("device", "room")[0] != EXIT_OK  # neither a room nor --clear


def test_an_unreachable_gateway() -> None:
    code, body = cli_household.call("http://127.0.0.1:1", "t", "GET", "/v1/households/me")
    assert (code, body) == (EXIT_CONNECTION, None)
