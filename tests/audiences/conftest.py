import pytest


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    """Uploaded provider files and export files go to a throw-away directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
