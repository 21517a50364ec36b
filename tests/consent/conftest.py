from __future__ import annotations

import pytest

from consent.models import Purpose
from consent.services import purposes_ensure_defaults


@pytest.fixture
def purposes(db) -> dict[str, Purpose]:
    """The default purposes (seeded by migration; re-created if a flush removed them)."""
    purposes_ensure_defaults()
    return {purpose.code: purpose for purpose in Purpose.objects.all()}
