"""Hypothesis budgets for the hostile-input tests, picked by ``HYPOTHESIS_PROFILE``.

``ci`` (the default) is small and derandomized, so every run tries the same inputs; ``long`` is for
local hunting: ``HYPOTHESIS_PROFILE=long pytest tests/reliability/test_hostile_input.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=80,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "long", max_examples=3000, deadline=None, database=None, suppress_health_check=_QUIET
)


def budget(share: float = 1.0) -> settings:
    """Return the selected profile with ``share`` of its examples (at least one)."""
    profile = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
    return settings(profile, max_examples=max(1, int(profile.max_examples * share)))
