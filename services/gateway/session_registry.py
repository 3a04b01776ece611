"""The gateway's streaming sessions as a whole: what they share (the inference client, the
served model's feature spec and detector settings, the incident machinery), the session
limits, and the ending of sessions from outside (a newer session of the device, a revoked
token).

A session is counted from its admission (``admit``, after its handshake) to its
``release``, as an ``AdmittedSession``: whose device, opened with which token, and how to
end it. ``services.gateway.sessions`` runs each session. Each admitted session's detector
(``detector_for``) carries what its device's cancels taught (the learned thresholds), and
follows a change of them (``retune``, from ``services.gateway.threshold_watch``); its profile
(``profile_for``) and its spoken words (``spoken_for``: the ``SpokenService`` of this gateway)
follow a change of the device's profile and languages (``use_profile``, ``use_languages``, from
``services.gateway.settings_watch``).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from services.gateway.ring_buffer import RingBuffer
from services.gateway.session_classifier import WindowClassifier
from services.gateway.session_incidents import IncidentBackend
from services.gateway.session_profile import SessionProfile
from services.gateway.session_spoken import SessionSpoken, SpokenService
from services.gateway.session_state import REVOKED_MESSAGE, SessionFatal
from services.gateway.settings import GatewaySettings
from shared.db import Device
from shared.detector import Detector, DetectorConfig
from shared.device_modes import DeviceProfile
from shared.features.spec import FeatureSpec
from shared.inference_wire import Ready
from shared.protocol import ErrorCode

log = logging.getLogger(__name__)

# How long a revocation is remembered for sessions still authenticating when it was heard.
REVOCATION_MEMORY_S = 60.0

Authenticate = Callable[[str], Awaitable[Device | None]]


@dataclass(eq=False)
class AdmittedSession:
    """One admitted session: its device, the hash of the token it was opened with, and
    ``end``, which ends it from outside (the client gets a fatal ``error`` with the message
    and the code's close)."""

    session_id: str
    device: Device
    token_hash: str
    end: Callable[[ErrorCode, str], None]


class SessionRegistry:
    """All streaming sessions of one gateway: the shared pieces and the session limit.

    Without ``incidents`` detections are only reported to the client (no incident, no
    countdown) and ``cancel``/``confirm`` are answered ``unknown_incident``.

    >>> registry = SessionRegistry(settings, inference_client, authenticate, EFFICIENTAT_MEL, incidents)
    >>> @app.websocket("/v1/stream")
    ... async def stream(websocket: WebSocket) -> None:
    ...     await serve_stream(registry, websocket)   # services.gateway.sessions
    """

    def __init__(
        self,
        settings: GatewaySettings,
        classifier: WindowClassifier,
        authenticate: Authenticate,
        spec: FeatureSpec | None = None,
        incidents: IncidentBackend | None = None,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.authenticate = authenticate
        # None: the served model's, from the inference handshake (no session starts before it).
        self.pinned_spec = spec
        self.spec = spec
        self.incidents = incidents
        # Built now so a bad threshold setting stops the gateway at startup, not a session;
        # rebuilt with the served model's thresholds by ``use_model`` at each (re)connect.
        self.detector_config = self._detector_config(None)
        self.active = 0
        # Admitted sessions per device, oldest first; a session is counted in ``active`` while here.
        self._by_device: dict[uuid.UUID, list[AdmittedSession]] = {}
        # Revocations heard lately: device -> (its current token's hash, None when deleted; when heard).
        self._revoked: dict[uuid.UUID, tuple[str | None, float]] = {}
        self._detectors: dict[str, Detector] = {}  # by session id, from ``detector_for`` to ``release``
        self._profiles: dict[str, SessionProfile] = {}  # by session id, from ``profile_for`` to ``release``
        self.spoken = SpokenService(settings.spoken)  # docs/spoken.md; ``close`` at shutdown
        self._spoken: dict[str, SessionSpoken] = {}  # by session id, from ``spoken_for`` to ``release``

    @property
    def hop_frames(self) -> int:
        if self.spec is None:
            raise RuntimeError("no feature spec before the first inference handshake")
        return self.spec.frames_for(self.settings.hop_s)

    def use_model(self, ready: Ready) -> None:
        """Take the feature spec (unless pinned) and the thresholds the model behind ``ready``
        advertises: sessions started from now on use them (explicit settings still win).
        Called at every (re)connect."""
        self.spec = self.pinned_spec or ready.spec
        self.detector_config = self._detector_config(ready.thresholds)
        explicit, stored = self.settings.detector_thresholds, ready.thresholds or {}
        log.info(
            "detector thresholds for model %s: %s", ready.model,
            ", ".join(
                f"{key} {value:g} ({'setting' if key in explicit else 'model' if key in stored else 'default'})"
                for key, value in self.detector_config.thresholds.items()
            ),
        )  # fmt: skip

    def _detector_config(self, model_thresholds: Mapping[str, float] | None) -> DetectorConfig:
        settings, spec = self.settings, self.spec
        # The hop the spec's frames can make (the setting rounded to whole frames).
        hop_s = settings.hop_s if spec is None else self.hop_frames * spec.frame_shift / spec.sample_rate
        return DetectorConfig.build(
            settings.detector_default_threshold,
            settings.detector_thresholds,
            model_thresholds,
            release_ratio=settings.detector_release_ratio,
            smoothing_windows=settings.detector_smoothing_windows,
            refractory_s=settings.detector_refractory_s,
            hop_s=hop_s,
        )

    async def detector_for(self, session: AdmittedSession) -> Detector:
        """The admitted ``session``'s detector: the served model's configuration with the
        thresholds its device's cancels taught. Without them (no learning, or the database
        away) the base ones, until the next change reaches ``retune``."""
        learning = self.incidents.learning if self.incidents is not None else None
        learned: Mapping[str, float] = {}
        if learning is not None:
            try:
                learned = (await learning.learned([session.device.id])).get(session.device.id, {})
            except Exception as error:
                log.warning("device %s: learned thresholds not read: %s", session.device.id, error)
        detector = Detector(replace(self.detector_config, learned_thresholds=self._applicable(learned)))
        self._detectors[session.session_id] = detector
        return detector

    def retune(self, device_id: uuid.UUID, learned: Mapping[str, float]) -> None:
        """The device's learned thresholds are now ``learned`` (all of them): its sessions'
        detectors judge their next windows by them."""
        for session in self.sessions_of(device_id):
            detector = self._detectors.get(session.session_id)
            if detector is not None:
                detector.retune(self._applicable(learned, detector.config))

    def profile_for(self, session: AdmittedSession, ring: RingBuffer) -> SessionProfile:
        """The admitted ``session``'s profile, as its device had it at the handshake; its rule
        hears the session's sound in ``ring``."""
        profile = SessionProfile(session.device.profile, self.settings.daycare, self.detector_config.hop_s, ring)
        self._profiles[session.session_id] = profile
        return profile

    def use_profile(self, device_id: uuid.UUID, profile: DeviceProfile) -> None:
        """The device's profile is now ``profile``: its sessions listen under it from their next window."""
        for session in self.sessions_of(device_id):
            if (listening := self._profiles.get(session.session_id)) is not None:
                listening.use(profile)

    def spoken_for(self, session: AdmittedSession, detector: Detector) -> SessionSpoken | None:
        """The admitted ``session``'s spoken words, for the languages its device had at the
        handshake, made its ``detector``'s spoken evidence; None where they cannot run here."""
        # None on a device not read from the database (a stand-in): it listens for none.
        listening = self.spoken.listen(session.device.spoken_languages or (), session.session_id)
        if listening is not None:
            detector.spoken = listening.fusion
            self._spoken[session.session_id] = listening
        return listening

    def use_languages(self, device_id: uuid.UUID, languages: Sequence[str]) -> None:
        """The device's spoken languages are now ``languages``: its sessions listen for them from their next audio."""
        for session in self.sessions_of(device_id):
            if (listening := self._spoken.get(session.session_id)) is not None:
                listening.use(languages)

    def _applicable(self, learned: Mapping[str, float], config: DetectorConfig | None = None) -> dict[str, float]:
        # Read against the base of the moment; a model served since may have moved the base above it.
        own = (config or self.detector_config).thresholds
        return {key: value for key, value in learned.items() if key in own and own[key] <= value <= 1.0}

    def admit(self, session: AdmittedSession) -> None:
        """Count an authenticated ``session`` in, or raise ``SessionFatal``.

        A device at ``max_sessions_per_device`` has its oldest session replaced (told why,
        then closed 4409), so one device never holds more and never takes another's slot;
        otherwise a gateway at ``max_sessions`` refuses (4429). A token revoked while the
        session was authenticating is refused (4001).
        """
        device_id = session.device.id
        if not self._token_current(device_id, session.token_hash):
            raise SessionFatal(ErrorCode.TOKEN_REVOKED, REVOKED_MESSAGE)
        mine = self._by_device.setdefault(device_id, [])
        cap = self.settings.max_sessions_per_device
        if len(mine) >= cap:
            oldest = mine[0]
            self._remove(oldest)  # its slot passes to the new session
            oldest.end(
                ErrorCode.SESSION_REPLACED,
                f"a newer session of this device started; a device may have {cap} at once and this was the oldest",
            )
            mine = self._by_device.setdefault(device_id, [])
        elif self.active >= self.settings.max_sessions:
            if not mine:
                del self._by_device[device_id]
            raise SessionFatal(
                ErrorCode.TOO_MANY_SESSIONS,
                f"the gateway is at its limit of {self.settings.max_sessions} sessions; retry later",
            )
        mine.append(session)
        self.active += 1

    def release(self, session: AdmittedSession) -> None:
        """Count ``session`` out (again is harmless)."""
        self._remove(session)

    def sessions_of(self, device_id: uuid.UUID) -> list[AdmittedSession]:
        """The device's admitted sessions, oldest first."""
        return list(self._by_device.get(device_id, ()))

    def all(self) -> list[AdmittedSession]:
        """Every admitted session."""
        return [session for mine in self._by_device.values() for session in mine]

    def revoke(self, device_id: uuid.UUID, current_token_hash: str | None) -> int:
        """End the device's sessions opened with another token than the one whose hash is
        ``current_token_hash`` (every one when None: the device is gone), telling each why
        (``token_revoked``, close 4001); returns how many. Remembered for a while, so that a
        session still authenticating with the old token is refused at admission."""
        now = time.monotonic()
        self._revoked[device_id] = (current_token_hash, now)
        for known, (_, heard_at) in list(self._revoked.items()):
            if now - heard_at > REVOCATION_MEMORY_S:
                del self._revoked[known]
        ended = sum(
            self.end_revoked(session)
            for session in self.sessions_of(device_id)
            if not self._token_current(device_id, session.token_hash)
        )
        if ended:
            log.info("device %s: %d sessions closed, their token revoked", device_id, ended)
        return ended

    def end_revoked(self, session: AdmittedSession) -> bool:
        """End an admitted ``session`` whose token is revoked (``token_revoked``, 4001);
        False when it was no longer admitted."""
        if session not in self._by_device.get(session.device.id, ()):
            return False
        self._remove(session)
        session.end(ErrorCode.TOKEN_REVOKED, REVOKED_MESSAGE)
        return True

    def _token_current(self, device_id: uuid.UUID, token_hash: str) -> bool:
        revoked = self._revoked.get(device_id)
        if revoked is None:
            return True
        current, _ = revoked
        return current is not None and hmac.compare_digest(current, token_hash)

    def _remove(self, session: AdmittedSession) -> None:
        mine = self._by_device.get(session.device.id)
        if mine is None or session not in mine:
            return
        self._detectors.pop(session.session_id, None)
        self._profiles.pop(session.session_id, None)
        self._spoken.pop(session.session_id, None)
        mine.remove(session)
        self.active -= 1
        if not mine:
            del self._by_device[session.device.id]
