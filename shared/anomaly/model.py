"""The density model of one home's sound: a Gaussian mixture over standardised window features.

A window's score is its negative log-density under the mixture (higher: less like anything
heard in the learning period). Training (:func:`train_model`) is expectation-maximisation
with full covariances, a k-means++ start and a ridge on each covariance so a component
never collapses onto a few identical windows (digital silence); it runs in the alerting
worker, never on the stream path. Scoring precomputes each component's whitening, so one
window costs a few small matrix-vector products (a few microseconds).

The model is stored per device as JSON (``anomaly_models.params``): :meth:`AnomalyModel.to_json`
and :meth:`AnomalyModel.from_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.anomaly.calibration import Calibration, calibrate

COMPONENTS = 6
ITERATIONS = 40
FIT_WINDOWS = 12_000  # EM runs on at most this many windows; the calibration scores them all
RIDGE = 0.05  # added to each covariance's diagonal, in standardised units
MIN_SAMPLES = 200


@dataclass
class AnomalyModel:
    """A trained mixture and its calibrated threshold (see :mod:`shared.anomaly.calibration`)."""

    mean: np.ndarray  # [D] of the learning features
    scale: np.ndarray  # [D]
    weights: np.ndarray  # [K]
    centres: np.ndarray  # [K, D], standardised
    covariances: np.ndarray  # [K, D, D]
    calibration: Calibration
    _whiten: np.ndarray = field(init=False, repr=False)  # [K, D, D]: inverse Cholesky factors
    _offsets: np.ndarray = field(init=False, repr=False)  # [K]: log weight - log normaliser

    def __post_init__(self) -> None:
        dim = self.mean.size
        chol = np.linalg.cholesky(self.covariances)
        self._whiten = np.linalg.inv(chol)
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        self._offsets = np.log(self.weights) - 0.5 * (log_det + dim * np.log(2 * np.pi))

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Negative log-density of each row of ``features`` [N, D] (float64 [N])."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        log_p = self._offsets[None, :] - 0.5 * _mahalanobis(z, self.centres, self._whiten)
        top = log_p.max(axis=1)
        return -(top + np.log(np.exp(log_p - top[:, None]).sum(axis=1)))

    def score(self, features: np.ndarray) -> float:
        """The score of one window's features [D]."""
        return float(self.scores(features[None, :])[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
            "centres": self.centres.tolist(), "covariances": self.covariances.tolist(),
            "calibration": self.calibration.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnomalyModel:
        return cls(
            np.asarray(data["mean"]), np.asarray(data["scale"]), np.asarray(data["weights"]),
            np.asarray(data["centres"]), np.asarray(data["covariances"]), Calibration.from_json(data["calibration"]),
        )


def train_model(
    pairs: np.ndarray, *, budget_per_week: float, hop_s: float, seed: int = 0, components: int = COMPONENTS
) -> AnomalyModel:
    """Fit the mixture to ``pairs`` [N, 2, D] (each sample two consecutive windows, as the
    gateway stores them) and calibrate its threshold to ``budget_per_week`` false alarms on
    this learning data (:func:`shared.anomaly.calibration.calibrate`). Raises ValueError with
    fewer than :data:`MIN_SAMPLES` samples."""
    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.ndim != 3 or pairs.shape[1] != 2 or pairs.shape[0] < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} window pairs [N, 2, D], got shape {pairs.shape}")
    windows = pairs.reshape(-1, pairs.shape[2])
    mean = windows.mean(axis=0)
    scale = windows.std(axis=0) + 1e-3
    z = (windows - mean) / scale
    rng = np.random.default_rng(seed)
    fit = z[rng.choice(len(z), size=FIT_WINDOWS, replace=False)] if len(z) > FIT_WINDOWS else z
    weights, centres, covariances = _fit(fit, min(components, len(fit) // 50 or 1), rng)
    untrained = AnomalyModel(mean, scale, weights, centres, covariances, Calibration(np.inf, 0.0, 0.0, 0.0, 0, 0.0))
    scores = untrained.scores(windows).reshape(-1, 2)
    smoothed = scores.min(axis=1)  # what the scorer alarms on: two windows in a row
    untrained.calibration = calibrate(smoothed, budget_per_week=budget_per_week, hop_s=hop_s)
    return untrained


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
