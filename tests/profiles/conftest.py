from __future__ import annotations

import pytest

from profiles.ingest.collect import source_cache_clear
from profiles.services import source_create


@pytest.fixture
def staged_only(settings):
    """Collection only: processing is exercised explicitly with pending_process()."""
    settings.CDPHUB_INGEST_PROCESSING = "off"
    source_cache_clear()
    yield
    source_cache_clear()


@pytest.fixture
def source():
    """A website source and its write key."""
    return source_create(name="Website")
