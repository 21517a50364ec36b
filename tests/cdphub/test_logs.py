"""Logs an operator can follow: a request id on every line of a request, said back to the
caller, staged with the messages it sent and carried into the lines processing writes about
them; one JSON object per line in production."""

from __future__ import annotations

import json
import logging

import pytest

from cdphub.logs import JsonFormatter, RequestIdFilter, current_request_id, request_id_set
from profiles.ingest import hooks
from profiles.ingest.processing import pending_process
from profiles.models import PendingMessage, RejectedMessage
from profiles.services import source_create
from tests.profiles.test_collect import post

pytestmark = pytest.mark.django_db

POISON = {"type": "track", "userId": "p", "event": "Explode", "messageId": "boom"}


@pytest.fixture
def exploding():
    """A processing hook that fails on the "Explode" event: that message cannot be processed."""

    def hook(messages):
        if any(m.payload.get("event") == "Explode" for m in messages):
            raise RuntimeError("the hook fails on this message")

    hooks.register(hook)
    yield
    hooks.unregister(hook)


@pytest.fixture
def key(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"
    return source_create(name="Web")[1]


def test_a_caller_s_request_id_is_kept_and_said_back(client, key):
    response = post(client, "/v1/track", POISON, key, HTTP_X_REQUEST_ID="lb-7f3a.2")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "lb-7f3a.2"
    assert PendingMessage.objects.get().request_id == "lb-7f3a.2"


@pytest.mark.parametrize("given", ["", "has spaces", "x" * 65, "new\nline", "é"])
def test_an_unusable_request_id_is_replaced_by_a_new_one(client, given):
    response = client.get("/api/", HTTP_X_REQUEST_ID=given)
    made = response["X-Request-ID"]
    assert made != given and len(made) == 32


def test_processing_logs_about_a_message_with_the_id_of_the_request_that_sent_it(
    client, key, caplog, exploding
):
    post(client, "/v1/track", POISON, key, HTTP_X_REQUEST_ID="req-42")
    assert current_request_id() == ""  # the request is over
    with caplog.at_level(logging.WARNING, logger="profiles.ingest.processing"):
        pending_process()
    assert RejectedMessage.objects.count() == 1
    [line] = [r for r in caplog.records if "could not be processed" in r.getMessage()]
    assert line.request_id == "req-42"


def test_json_lines_carry_time_level_logger_message_request_id_and_traceback():
    record = logging.LogRecord("profiles.x", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    with request_id_set("req-9"):
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR"
    assert line["logger"] == "profiles.x"
    assert line["message"] == "failed x"
    assert line["request_id"] == "req-9"
    assert "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")


def test_production_logs_are_json_and_development_logs_text():
    import subprocess
    import sys

    from tests.server import BASE_DIR

    code = (
        "import django, logging; django.setup(); from django.conf import settings; "
        "print(settings.CDPHUB_LOG_FORMAT); logging.getLogger('cdphub.probe').warning('hello')"
    )
    env_production = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "s" * 60,
        "DJANGO_ALLOWED_HOSTS": "example.com",
        "DJANGO_SETTINGS_MODULE": "cdphub.settings",
    }
    import os

    result = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**os.environ, **env_production},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "json"
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["message"], line["level"], line["request_id"]) == ("hello", "WARNING", None)
