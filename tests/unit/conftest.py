"""Fixtures shared by the unit tests of the batch engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from twin import batch_fold


@pytest.fixture(scope="module")
def join_every_batch() -> Iterator[None]:
    """Batches of few robots join too (`batch_fold.NARROW_ROBOTS` 0): the tests' fleets are small,
    and the join is what they compare with the scalar core. Module-wide, so that module fixtures
    that fold see it as well (`pytestmark = pytest.mark.usefixtures("join_every_batch")`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_fold, "NARROW_ROBOTS", 0)
        yield
