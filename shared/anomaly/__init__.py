"""Away and alone modes: a per-device model of that home's own sound (docs/anomaly.md).

* :mod:`~shared.anomaly.features`: the cheap per-window description of a sound (with the
  nine-class model's view and the moment before it), and activity;
* :mod:`~shared.anomaly.model`: the cues (a density model, the class scores' tails, the moment), trained and scored;
* :mod:`~shared.anomaly.calibration`: the threshold that keeps a false-alarm budget;
* :mod:`~shared.anomaly.scoring`: a stream's windows judged under a listening mode;
* :mod:`~shared.anomaly.inactivity`: when a long silence is a concern;
* :mod:`~shared.anomaly.policy`: the settings both services read;
* :mod:`~shared.anomaly.store` and :mod:`~shared.anomaly.incidents`: the database side.
"""

from shared.anomaly.features import FEATURE_LENGTH, ActivityFloor, WindowDescriber, assemble, window_features
from shared.anomaly.model import CUES, AnomalyModel, train_model
from shared.anomaly.policy import AnomalyPolicy
from shared.anomaly.scoring import AnomalyScorer, ScoredWindow

__all__ = [
    "FEATURE_LENGTH",
    "ActivityFloor",
    "CUES",
    "AnomalyModel",
    "AnomalyPolicy",
    "AnomalyScorer",
    "ScoredWindow",
    "WindowDescriber",
    "assemble",
    "train_model",
    "window_features",
]
