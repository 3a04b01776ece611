"""The model of one home's sound: four cues, each with a threshold calibrated to its share.

A window (its vector from :class:`shared.anomaly.features.WindowDescriber`) gets one score per
cue (:data:`CUES`; higher: less like anything heard in the learning period):

* ``sound``: the negative log-density of its spectral part under a Gaussian mixture.
  Training is expectation-maximisation with full covariances, a k-means++ start and a ridge on
  each covariance so a component never collapses onto a few identical windows (digital
  silence); scoring precomputes each component's whitening (a few small matrix products);
* ``classes``: how far the nine-class model's view of it goes beyond the home's own: for each
  emergency class, its logit over that class's :data:`TAIL_SHARE` upper quantile in the
  learning period, in units of the mean excess over it, and the highest of these. A home
  whose TV often sounds a little like ``crime`` has a higher quantile for it, a quiet home a
  low one;
* ``moment``: the level jump over the seconds just before (dB);
* ``impact``: a sudden sound across the spectrum that is also a jump over the moment before (a
  fall, a blow, a door forced): the window's broadband suddenness and its moment
  (:func:`shared.anomaly.features.impact_parts`), each over its own :data:`TAIL_SHARE` upper
  quantile in the learning period in units of the mean excess, the suddenness weighted
  :data:`IMPACT_SUDDEN_WEIGHT`, summed. Each part alone is reached by ordinary sounds (the
  moment by an alarm clock starting in a quiet room, suddenness by a door closed in a busy
  kitchen); both at once are rarer in a home than either.

Each cue in use (the policy's ``cues``) has its threshold calibrated on the learning period's
scores of that cue (:func:`shared.anomaly.calibration.calibrate`) to an equal share of the
weekly budget; a window is abnormal when any cue reaches its threshold. Training runs in the alerting worker,
never on the stream path.

The model is stored per device as JSON (``anomaly_models.params``): :meth:`AnomalyModel.to_json`
and :meth:`AnomalyModel.from_json`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.anomaly.calibration import Calibration, calibrate
from shared.anomaly.features import CLASSES, FEATURE_LENGTH, MOMENT, SPECTRAL, impact_parts

CUES = ("sound", "classes", "moment", "impact")
COMPONENTS = 6
ITERATIONS = 40
FIT_WINDOWS = 12_000  # EM runs on at most this many windows; the calibration scores them all
RIDGE = 0.05  # added to each covariance's diagonal, in standardised units
MIN_SAMPLES = 200
_OFF = Calibration(math.inf, 0.0, 1.0, 0.0, 0, 0.0)  # a cue not in use: never reached
TAIL_SHARE = 0.01  # each class's (and each impact part's) own tail starts at its 99th percentile in the learning period
MIN_CLASS_SCALE = 0.25  # logits: a class the home never raises still needs a clear rise
# The impact's parts: broadband suddenness (log-mel units: 0.05 is about 1 dB) and the moment (dB).
MIN_IMPACT_SCALE = np.array([0.05, 1.0])
IMPACT_SUDDEN_WEIGHT = 0.25  # chosen on the bench's tuning seed (docs/anomaly.md)
_IMPACT_WEIGHTS = np.array([IMPACT_SUDDEN_WEIGHT, 1.0])


@dataclass
class AnomalyModel:
    """A trained model: the mixture (``sound``), each class's tail (``classes``), the impact's
    parts' tails (``impact``) and the calibrations of the :data:`CUES`, in that order (see
    :mod:`shared.anomaly.calibration`)."""

    mean: np.ndarray  # [S] of the learning windows' spectral parts
    scale: np.ndarray  # [S]
    weights: np.ndarray  # [K]
    centres: np.ndarray  # [K, S], standardised
    covariances: np.ndarray  # [K, S, S]
    class_from: np.ndarray  # [C]: each emergency class's logit quantile
    class_scale: np.ndarray  # [C]: and the mean excess over it
    impact_from: np.ndarray  # [2]: the impact's parts' quantiles
    impact_scale: np.ndarray  # [2]: and the mean excess over them
    calibrations: tuple[Calibration, ...]
    _whiten: np.ndarray = field(init=False, repr=False)  # [K, S, S]: inverse Cholesky factors
    _offsets: np.ndarray = field(init=False, repr=False)  # [K]: log weight - log normaliser
    _thresholds: np.ndarray = field(init=False, repr=False)
    _sound: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        dim = self.mean.size
        chol = np.linalg.cholesky(self.covariances)
        self._whiten = np.linalg.inv(chol)
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        self._offsets = np.log(self.weights) - 0.5 * (log_det + dim * np.log(2 * np.pi))
        self._thresholds = np.array([c.threshold for c in self.calibrations])
        # The mixture is scored when its cue is in use, and while a model is being calibrated (no cue yet).
        self._sound = "sound" in self.cues or not self.cues

    @property
    def cues(self) -> tuple[str, ...]:
        """The cues in use (a cue left out of the policy's ``cues`` never alarms)."""
        return tuple(cue for cue, c in zip(CUES, self.calibrations) if math.isfinite(c.threshold))

    @property
    def threshold(self) -> float:
        """The first cue in use's threshold (the one the model's row and the device's state show)."""
        return next(c.threshold for c in self.calibrations if math.isfinite(c.threshold))

    @property
    def budget_per_week(self) -> float:
        """The device's budget, shared among the cues."""
        return sum(c.budget_per_week for c in self.calibrations)

    @property
    def thresholds(self) -> np.ndarray:
        """float64 [len(CUES)]."""
        return self._thresholds

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Each cue's score of each row of ``features`` [N, FEATURE_LENGTH] (float64 [N, len(CUES)])."""
        x = np.asarray(features, dtype=np.float64)
        if self._sound:
            z = (x[:, SPECTRAL] - self.mean) / self.scale
            log_p = self._offsets[None, :] - 0.5 * _mahalanobis(z, self.centres, self._whiten)
            top = log_p.max(axis=1)
            sound = -(top + np.log(np.exp(log_p - top[:, None]).sum(axis=1)))
        else:
            sound = np.zeros(len(x))  # off: its threshold is never reached, and the mixture costs half the time
        classes = ((x[:, CLASSES] - self.class_from) / self.class_scale).max(axis=1)
        impact = ((impact_parts(x) - self.impact_from) / self.impact_scale) @ _IMPACT_WEIGHTS
        return np.stack([sound, classes, x[:, MOMENT.start], impact], axis=1)

    def score(self, features: np.ndarray) -> np.ndarray:
        """The cues' scores of one window's features [FEATURE_LENGTH]."""
        return self.scores(features[None, :])[0]

    def abnormal(self, features: np.ndarray) -> bool:
        """One window reaches a cue's threshold."""
        return bool(np.any(self.score(features) >= self._thresholds))

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
            "centres": self.centres.tolist(), "covariances": self.covariances.tolist(),
            "class_from": self.class_from.tolist(), "class_scale": self.class_scale.tolist(),
            "impact_from": self.impact_from.tolist(), "impact_scale": self.impact_scale.tolist(),
            "calibrations": {cue: c.to_json() for cue, c in zip(CUES, self.calibrations) if cue in self.cues},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnomalyModel:
        """Raises ValueError for a model of an older format (one cue, before the class scores).
        A model stored before the ``impact`` cue is judged by its own cues (impact off)."""
        if "calibrations" not in data:
            raise ValueError("an anomaly model of an older format (spectral features only): retrain it")
        return cls(
            np.asarray(data["mean"]), np.asarray(data["scale"]), np.asarray(data["weights"]),
            np.asarray(data["centres"]), np.asarray(data["covariances"]), np.asarray(data["class_from"]),
            np.asarray(data["class_scale"]), np.asarray(data.get("impact_from", np.zeros(2))),
            np.asarray(data.get("impact_scale", MIN_IMPACT_SCALE)),
            tuple(Calibration.from_json(data["calibrations"][cue]) if cue in data["calibrations"] else _OFF for cue in CUES),
        )


def train_model(
    pairs: np.ndarray, *, budget_per_week: float, hop_s: float, cues: Sequence[str] = CUES, seed: int = 0,
    components: int = COMPONENTS,
) -> AnomalyModel:
    """Fit the model to ``pairs`` [N, 2, FEATURE_LENGTH] (each sample two consecutive windows,
    as the gateway stores them) and calibrate the threshold of each of ``cues`` to its share of
    ``budget_per_week`` false alarms on this learning data
    (:func:`shared.anomaly.calibration.calibrate`); the others never alarm. Raises ValueError
    with fewer than :data:`MIN_SAMPLES` samples, or no known cue."""
    if not cues or set(cues) - set(CUES):
        raise ValueError(f"cues must be some of {', '.join(CUES)}, got {list(cues)}")
    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.ndim != 3 or pairs.shape[1:] != (2, FEATURE_LENGTH) or pairs.shape[0] < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} window pairs [N, 2, {FEATURE_LENGTH}], got shape {pairs.shape}")
    windows = pairs.reshape(-1, FEATURE_LENGTH)
    spectral = windows[:, SPECTRAL]
    mean = spectral.mean(axis=0)
    scale = spectral.std(axis=0) + 1e-3
    z = (spectral - mean) / scale
    rng = np.random.default_rng(seed)
    fit = z[rng.choice(len(z), size=FIT_WINDOWS, replace=False)] if len(z) > FIT_WINDOWS else z
    weights, centres, covariances = _fit(fit, min(components, len(fit) // 50 or 1), rng)
    class_from, class_scale = _tail(windows[:, CLASSES], MIN_CLASS_SCALE)
    impact_from, impact_scale = _tail(impact_parts(windows), MIN_IMPACT_SCALE)
    tails = (class_from, class_scale, impact_from, impact_scale)
    model = AnomalyModel(mean, scale, weights, centres, covariances, *tails, (_OFF,) * len(CUES))
    smoothed = model.scores(windows).reshape(-1, 2, len(CUES)).min(axis=1)  # as the scorer alarms: two in a row
    share = budget_per_week / len(cues)
    calibrations = tuple(calibrate(smoothed[:, i], budget_per_week=share, hop_s=hop_s) if cue in cues else _OFF
                         for i, cue in enumerate(CUES))  # fmt: skip
    return AnomalyModel(mean, scale, weights, centres, covariances, *tails, calibrations)


def _tail(values: np.ndarray, min_scale: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's :data:`TAIL_SHARE` upper quantile and the mean excess over it (at least
    ``min_scale``): where the home's own tail of it starts, and its unit."""
    start = np.quantile(values, 1.0 - TAIL_SHARE, axis=0)
    above = values > start  # a column may never be above its quantile (all clipped alike)
    excess = np.where(above, values - start, 0.0).sum(axis=0) / np.maximum(above.sum(axis=0), 1)
    return start, np.maximum(excess, min_scale)


def _fit(z: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, dim = z.shape
    # k-means++ seeding on a subsample (the learning period holds tens of thousands of windows).
    pool = z[rng.choice(n, size=min(n, 5000), replace=False)]
    centres = [pool[rng.integers(len(pool))]]
    for _ in range(k - 1):
        d2 = np.min(((pool[:, None, :] - np.asarray(centres)[None]) ** 2).sum(axis=2), axis=1)
        centres.append(pool[rng.choice(len(pool), p=d2 / d2.sum())])
    means = np.asarray(centres)
    covariances = np.repeat(np.eye(dim)[None], k, axis=0)
    weights = np.full(k, 1.0 / k)
    ridge = RIDGE * np.eye(dim)
    for _ in range(ITERATIONS):
        chol = np.linalg.cholesky(covariances)
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        log_p = np.log(weights)[None] - 0.5 * (_mahalanobis(z, means, np.linalg.inv(chol)) + log_det[None])
        log_p -= log_p.max(axis=1, keepdims=True)
        resp = np.exp(log_p)
        resp /= resp.sum(axis=1, keepdims=True)
        counts = resp.sum(axis=0) + 1e-9
        weights = counts / n
        means = (resp.T @ z) / counts[:, None]
        for j in range(k):
            diff = z - means[j]
            covariances[j] = (resp[:, j, None] * diff).T @ diff / counts[j] + ridge
    return weights, means, covariances


def _mahalanobis(z: np.ndarray, centres: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    """Squared whitened distances [N, K] of rows ``z`` to each component (one matrix product each)."""
    out = np.empty((z.shape[0], centres.shape[0]))
    for k in range(centres.shape[0]):
        white = (z - centres[k]) @ whiten[k].T
        out[:, k] = np.einsum("nd,nd->n", white, white)
    return out
