"""How many examples a costly property test tries.

Most property tests take microseconds an example and keep hypothesis's budget. A few fold a
whole scenario per example (seconds each): they try a few examples in the everyday run and
their full budget under `pytest --hypothesis-profile=thorough` (CI, or after changing the
core). The assertion is the same either way; only the number of inputs tried differs.
"""

from __future__ import annotations

from hypothesis import settings

THOROUGH = "thorough"
"""The profile registered in tests/conftest.py."""


def examples(everyday: int, thorough: int) -> settings:
    """Settings for a costly property test: `everyday` examples, `thorough` under the thorough profile
    (read when the test module is imported, after pytest has loaded the profile)."""
    n = thorough if settings.get_current_profile_name() == THOROUGH else everyday
    return settings(max_examples=n, deadline=None)
