"""The probes: /healthz answers whenever the process does; /readyz checks the database, the
migrations and the broker for real and names what fails (a closed port, a migration missing),
and both answer a probe that comes by address over plain HTTP in production settings."""

from __future__ import annotations

import pytest
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

from cdphub import health
from tests.profiles.test_collect_worker import require_redis

pytestmark = pytest.mark.django_db

CLOSED_PORT = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def ask_again(monkeypatch):
    """Each test asks about the migrations itself (a process remembers once they are)."""
    monkeypatch.setattr(health, "_migrated", False)


@pytest.fixture
def production(settings):
    settings.ALLOWED_HOSTS = ["cdp.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    return settings


def test_healthz_answers_a_probe_by_address_over_plain_http(client, production):
    response = client.get("/healthz", HTTP_HOST="10.0.3.7:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"
    # Every other page still gets the host check and the redirect.
    assert client.get("/admin/", HTTP_HOST="cdp.example.com").status_code == 301
    assert client.get("/admin/", HTTP_HOST="10.0.3.7:8000").status_code == 400


def test_readyz_is_ready_when_everything_answers(client, production, settings):
    settings.CELERY_BROKER_URL = None  # tasks in the process: no broker to reach
    response = client.get("/readyz/", HTTP_HOST="10.0.3.7")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok"},
    }


@pytest.fixture
def broker(settings):
    """Points the tasks' app at a broker URL for one test."""
    from cdphub.celery import app

    original = app.conf.broker_url

    def point_at(url: str) -> None:
        settings.CELERY_BROKER_URL = url
        app.conf.broker_url = url

    yield point_at
    app.conf.broker_url = original


def test_readyz_checks_a_real_broker(client, broker):
    require_redis()
    broker("redis://127.0.0.1:6379/15")
    assert client.get("/readyz").json()["checks"]["broker"] == "ok"

    broker(CLOSED_PORT)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert "refused" in body["checks"]["broker"].lower()


def test_readyz_names_a_migration_not_applied(client):
    applied = MigrationRecorder.Migration.objects.filter(app="cdphub").order_by("-id").first()
    applied.delete()  # as if the deployment forgot to migrate (rolled back after the test)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == (
        f"1 migrations not applied: cdphub.{applied.name}"
    )


def test_readyz_says_the_database_does_not_answer(client, monkeypatch):
    unreachable = connections.create_connection("default")
    unreachable.settings_dict = {**unreachable.settings_dict, "PORT": "1"}
    monkeypatch.setitem(health.CHECKS, "database", lambda: health.database_check(unreachable))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("OperationalError")


def test_probes_answer_only_get_and_head(client):
    response = client.post("/readyz")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert client.head("/healthz").status_code == 200
