"""The inference token and queue share settings, on both sides of the connection."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from services.gateway.settings import GatewaySettings
from services.inference.settings import InferenceSettings

TOKEN = "a-real-inference-token"


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("HEARO_ENVIRONMENT", "production")
    monkeypatch.setenv("HEARO_CLIPS_SECRET_KEY", "a-real-clip-signing-secret")
    monkeypatch.setenv("HEARO_GATEWAY_ENROLMENT_KEY", "a-real-enrolment-key")
    return monkeypatch


def test_development_gateway_and_inference_share_one_generated_token(data_dir_outside_the_repo: Path) -> None:
    token = GatewaySettings().inference_credential()
    assert InferenceSettings().accepted_tokens() == [token]
    secret = data_dir_outside_the_repo / "secrets" / "inference-token"
    assert secret.read_text().strip() == token and secret.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 32


def test_production_needs_the_token_on_both_sides(production: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="HEARO_INFERENCE_TOKEN is required outside development"):
        InferenceSettings()
    with pytest.raises(ValueError, match=r"HEARO_GATEWAY_INFERENCE_TOKEN \(or HEARO_INFERENCE_TOKEN\) is required"):
        GatewaySettings()
    production.setenv("HEARO_INFERENCE_TOKEN", TOKEN)  # the one name both read
    assert InferenceSettings().accepted_tokens() == [TOKEN]
    assert GatewaySettings().inference_credential() == TOKEN
    production.setenv("HEARO_GATEWAY_INFERENCE_TOKEN", "a-gateway-own-inference-token")
    assert GatewaySettings().inference_credential() == "a-gateway-own-inference-token"


@pytest.mark.parametrize("variable", ["HEARO_INFERENCE_TOKEN", "HEARO_INFERENCE_PREVIOUS_TOKENS"])
def test_production_refuses_a_public_development_token(production: pytest.MonkeyPatch, variable: str) -> None:
    production.setenv("HEARO_INFERENCE_TOKEN", TOKEN)
    production.setenv(variable, "change-me-dev-only")
    with pytest.raises(ValueError, match="public development value") as refused:
        InferenceSettings()
    assert "change-me-dev-only" not in str(refused.value)  # a refused secret is never echoed


def test_previous_tokens_are_comma_separated_and_short_tokens_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARO_INFERENCE_TOKEN", TOKEN)
    monkeypatch.setenv("HEARO_INFERENCE_PREVIOUS_TOKENS", "the-old-inference-token, an-older-inference-token")
    assert InferenceSettings().accepted_tokens() == [TOKEN, "the-old-inference-token", "an-older-inference-token"]
    monkeypatch.setenv("HEARO_INFERENCE_TOKEN", "short")
    with pytest.raises(ValueError, match="at least 16 characters"):
        InferenceSettings()


def test_the_connection_quota_defaults_to_half_the_queue_and_is_bounded() -> None:
    assert InferenceSettings().client_queue_size() == 256
    assert InferenceSettings(queue_size=32, max_batch=32).client_queue_size() == 32
    assert InferenceSettings(connection_queue_size=100).client_queue_size() == 100
    with pytest.raises(ValueError, match="HEARO_INFERENCE_CONNECTION_QUEUE_SIZE"):
        InferenceSettings(connection_queue_size=8)  # below max_batch: a full request could never fit


def test_serve_inference_listens_on_loopback_and_names_a_missing_token(production: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from hearo.cli import app, serve_inference
    from hearo.supervisor import build_children

    assert inspect.signature(serve_inference).parameters["host"].default == "127.0.0.1"
    inference = next(child for child in build_children("0.0.0.0", 8000, 8001, False) if child.name == "inference")
    assert inference.argv[inference.argv.index("--host") + 1] == "127.0.0.1"
    result = CliRunner().invoke(app, ["serve", "inference"])
    assert result.exit_code == 2
    assert "HEARO_INFERENCE_TOKEN is required outside development" in result.output
    assert "Traceback" not in result.output
