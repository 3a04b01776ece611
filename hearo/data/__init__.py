"""``hearo data build``: the default model's training data, from allow-listed Debian packages and synthesis."""

from __future__ import annotations

from hearo.data.build import BuildConfig, BuildSummary, build_dataset
from hearo.data.sources import ALLOWED_PACKAGES, DEFAULT_PACKAGES, DisallowedPackageError, check_packages

__all__ = [
    "ALLOWED_PACKAGES",
    "DEFAULT_PACKAGES",
    "BuildConfig",
    "BuildSummary",
    "DisallowedPackageError",
    "build_dataset",
    "check_packages",
]
