from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from cdphub.roles import ROLES, roles_sync
from cdphub.services import api_key_create
from profiles.ingest.observed import observed_fields_forget


@pytest.fixture(autouse=True)
def observed_fields_forgotten():
    """Every test starts as a new process would: what processing recorded for the rule builder
    is remembered per process, and a test database's flush does not empty that memory."""
    observed_fields_forget()
    yield
    observed_fields_forget()


@pytest.fixture(autouse=True)
def project_celery_app_stays_current():
    """Tasks are sent through the process's current Celery app (eager without a broker). A
    test that makes another app current (a test worker does) must put the project's back, or
    every later test's tasks would go where no one runs them."""
    from celery import current_app

    from cdphub.celery import app

    yield
    assert current_app._get_current_object() is app, "a test left another Celery app current"


@pytest.fixture
def roles(db) -> dict[str, Group]:
    roles_sync()
    return {group.name: group for group in Group.objects.filter(name__in=ROLES)}


@pytest.fixture
def user_with_role(roles):
    """Factory: a staff user in the given role group."""

    def make(role: str, username: str | None = None):
        user = get_user_model().objects.create_user(
            username=username or role.lower().replace(" ", "_"),
            password="pw-for-tests-1",
            is_staff=True,
        )
        user.groups.add(roles[role])
        return user

    return make


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-1")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def api_client_with_scopes(db):
    """Factory: an API client authenticated with a new key holding the given scopes."""

    def make(*scopes: str) -> APIClient:
        _, key = api_key_create(name=f"test {' '.join(scopes)}", scopes=list(scopes))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def delivery_engine(settings):
    """Collection, processing and destinations' sending run when the test says so; retries
    are due at once, a receiver has two seconds, and local receivers are allowed."""
    from consent.services import purposes_ensure_defaults

    settings.CDPHUB_INGEST_PROCESSING = "off"
    settings.CDPHUB_DELIVERY = "off"
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.CDPHUB_DELIVERY_BACKOFF_SECONDS = 0
    settings.CDPHUB_DELIVERY_TIMEOUT_SECONDS = 2
    purposes_ensure_defaults()
    return settings
